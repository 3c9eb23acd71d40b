"""The control API: HTTP/1.1 + JSON, with Toxiproxy's routes (docs/faults.md has the reference).

    GET    /version                          {"version", "seed"}
    GET    /proxies                          {name: proxy}
    POST   /proxies                          create {name, listen, upstream, enabled?} -> 201 proxy
    POST   /populate                         [proxy, ...] create or replace each -> {"proxies": [...]}
    GET    /proxies/NAME                     proxy
    POST   /proxies/NAME                     update {enabled?, upstream?, listen?} -> proxy
    DELETE /proxies/NAME                     204
    GET    /proxies/NAME/toxics              [toxic, ...]
    POST   /proxies/NAME/toxics              add {name?, type, stream?, toxicity?, attributes?} -> toxic
    DELETE /proxies/NAME/toxics              remove them all (heal one proxy) -> 204
    GET    /proxies/NAME/toxics/TOXIC        toxic
    POST   /proxies/NAME/toxics/TOXIC        update {toxicity?, attributes?} -> toxic
    DELETE /proxies/NAME/toxics/TOXIC        204
    POST   /reset                            every proxy enabled, every toxic removed -> 204

Errors are ``{"error": text, "status": code}``: 400 bad input, 404 unknown proxy/toxic/route, 405 wrong
method, 409 name taken or listen address in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from urllib.parse import unquote

from . import VERSION
from .relay import Proxy, split_address
from .toxics import Toxic, ToxicError, make_toxic

__all__ = ["ApiError", "Control"]

MAX_BODY = 1 << 20
_REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large", 500: "Internal Server Error"}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _log(text: str) -> None:
    print(text, file=sys.stdout, flush=True)


class Control:
    def __init__(self, seed: str) -> None:
        self.seed = seed
        self.proxies: dict[str, Proxy] = {}

    # -- the operations
    async def create(self, body: object, replace: bool = False) -> Proxy:
        if not isinstance(body, dict):
            raise ApiError(400, "a proxy is a JSON object")
        if unknown := sorted(set(body) - {"name", "listen", "upstream", "enabled"}):
            raise ApiError(400, f"unknown proxy field(s): {', '.join(unknown)}")
        name = body.get("name")
        if not isinstance(name, str) or not name or "/" in name:
            raise ApiError(400, f"a proxy's name is a non-empty string without '/', not {name!r}")
        listen, upstream = (self._address(body, key) for key in ("listen", "upstream"))
        enabled = body.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ApiError(400, "enabled is true or false")
        if name in self.proxies:
            if not replace:
                raise ApiError(409, f"proxy {name!r} already exists")
            await self.delete(name)
        proxy = Proxy(name, listen, upstream, self.seed)
        if enabled:
            await self._enable(proxy)
        self.proxies[name] = proxy
        _log(f"proxy created name={name} listen={proxy.as_json()['listen']} upstream={proxy.as_json()['upstream']} "
             f"enabled={enabled}")
        return proxy

    @staticmethod
    def _address(body: dict[str, object], key: str) -> tuple[str, int]:
        value = body.get(key)
        if not isinstance(value, str):
            raise ApiError(400, f"{key} is a 'host:port' string")
        try:
            return split_address(value)
        except ValueError as exc:
            raise ApiError(400, f"{key}: {exc}") from None

    @staticmethod
    async def _enable(proxy: Proxy) -> None:
        try:
            await proxy.enable()
        except OSError as exc:
            raise ApiError(409, f"proxy {proxy.name!r} cannot listen on {proxy.listen[0]}:{proxy.listen[1]}: "
                                f"{exc.strerror or exc}") from None

    async def update(self, name: str, body: object) -> Proxy:
        proxy = self.proxy(name)
        if not isinstance(body, dict):
            raise ApiError(400, "a proxy update is a JSON object")
        if unknown := sorted(set(body) - {"name", "listen", "upstream", "enabled"}):
            raise ApiError(400, f"unknown proxy field(s): {', '.join(unknown)}")
        if body.get("name", name) != name:
            raise ApiError(400, "a proxy cannot be renamed")
        enabled = body.get("enabled", proxy.enabled)
        if not isinstance(enabled, bool):
            raise ApiError(400, "enabled is true or false")
        if "upstream" in body:
            proxy.upstream = self._address(body, "upstream")  # new connections go there
        if "listen" in body and (listen := self._address(body, "listen")) != proxy.listen:
            await proxy.disable()
            proxy.listen = listen
        if enabled:
            await self._enable(proxy)
        elif proxy.enabled or proxy.server is not None:
            await proxy.disable()
        _log(f"proxy updated name={name} enabled={proxy.enabled} upstream={proxy.as_json()['upstream']}")
        return proxy

    async def delete(self, name: str) -> None:
        proxy = self.proxy(name)
        await proxy.disable()
        del self.proxies[name]
        _log(f"proxy deleted name={name}")

    def proxy(self, name: str) -> Proxy:
        try:
            return self.proxies[name]
        except KeyError:
            raise ApiError(404, f"no proxy {name!r}") from None

    def add_toxic(self, name: str, body: object) -> dict[str, object]:
        proxy = self.proxy(name)
        try:
            toxic = make_toxic(body)
        except ToxicError as exc:
            raise ApiError(400, str(exc)) from None
        if toxic.name in proxy.toxics:
            raise ApiError(409, f"proxy {name!r} already has a toxic {toxic.name!r}")
        proxy.toxics[toxic.name] = toxic
        proxy.notify()
        _log(f"toxic added proxy={name} {json.dumps(toxic.as_json(), sort_keys=True)}")
        return toxic.as_json()

    def update_toxic(self, name: str, toxic_name: str, body: object) -> dict[str, object]:
        proxy = self.proxy(name)
        old = self._toxic(proxy, toxic_name)
        try:
            toxic = make_toxic(body, base=old)
        except ToxicError as exc:
            raise ApiError(400, str(exc)) from None
        if toxic.name != old.name:
            raise ApiError(400, "a toxic cannot be renamed")
        proxy.toxics[toxic_name] = toxic
        proxy.notify()
        _log(f"toxic updated proxy={name} {json.dumps(toxic.as_json(), sort_keys=True)}")
        return toxic.as_json()

    def remove_toxics(self, proxy: Proxy, names: list[str]) -> None:
        for toxic_name in names:
            del proxy.toxics[toxic_name]
            _log(f"toxic removed proxy={proxy.name} name={toxic_name}")
        proxy.notify()

    @staticmethod
    def _toxic(proxy: Proxy, toxic_name: str) -> Toxic:
        try:
            return proxy.toxics[toxic_name]
        except KeyError:
            raise ApiError(404, f"proxy {proxy.name!r} has no toxic {toxic_name!r}") from None

    async def reset(self) -> None:
        for proxy in self.proxies.values():
            self.remove_toxics(proxy, list(proxy.toxics))
            await self._enable(proxy)
        _log("reset: every proxy enabled, every toxic removed")

    # -- routing
    async def route(self, method: str, path: str, body: object) -> tuple[int, object]:
        parts = [unquote(p) for p in path.split("?", 1)[0].split("/") if p]
        match parts:
            case ["version"]:
                self._method(method, "GET")
                return 200, {"version": VERSION, "seed": self.seed}
            case ["reset"]:
                self._method(method, "POST")
                await self.reset()
                return 204, None
            case ["populate"]:
                self._method(method, "POST")
                if not isinstance(body, list):
                    raise ApiError(400, "populate takes a JSON list of proxies")
                made = [await self.create(item, replace=True) for item in body]
                return 200, {"proxies": [p.as_json() for p in made]}
            case ["proxies"]:
                if self._method(method, "GET", "POST") == "GET":
                    return 200, {name: p.as_json() for name, p in self.proxies.items()}
                return 201, (await self.create(body)).as_json()
            case ["proxies", name]:
                verb = self._method(method, "GET", "POST", "DELETE")
                if verb == "GET":
                    return 200, self.proxy(name).as_json()
                if verb == "POST":
                    return 200, (await self.update(name, body)).as_json()
                await self.delete(name)
                return 204, None
            case ["proxies", name, "toxics"]:
                verb = self._method(method, "GET", "POST", "DELETE")
                if verb == "GET":
                    return 200, [t.as_json() for t in self.proxy(name).toxics.values()]
                if verb == "POST":
                    return 200, self.add_toxic(name, body)
                proxy = self.proxy(name)
                self.remove_toxics(proxy, list(proxy.toxics))
                return 204, None
            case ["proxies", name, "toxics", toxic_name]:
                verb = self._method(method, "GET", "POST", "DELETE")
                proxy = self.proxy(name)
                if verb == "GET":
                    return 200, self._toxic(proxy, toxic_name).as_json()
                if verb == "POST":
                    return 200, self.update_toxic(name, toxic_name, body)
                self._toxic(proxy, toxic_name)
                self.remove_toxics(proxy, [toxic_name])
                return 204, None
        raise ApiError(404, f"no route {path!r}")

    @staticmethod
    def _method(method: str, *allowed: str) -> str:
        if method not in allowed:
            raise ApiError(405, f"{method} is not allowed here (allowed: {', '.join(allowed)})")
        return method

    # -- HTTP
    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        line = await reader.readline()
        if not line:
            return False
        method, target, version = line.decode("latin-1").split()
        headers: dict[str, str] = {}
        while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
            key, _, value = header.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        try:
            if length > MAX_BODY:
                raise ApiError(413, "request body too large")
            raw = await reader.readexactly(length) if length else b""
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError:
                raise ApiError(400, "the request body is not JSON") from None
            status, answer = await self.route(method.upper(), target, body)
        except ApiError as exc:
            status, answer = exc.status, {"error": str(exc), "status": exc.status}
        except Exception as exc:  # a bug: answered, logged, and the proxy keeps running
            _log(f"error: {type(exc).__name__}: {exc}")
            status, answer = 500, {"error": f"{type(exc).__name__}: {exc}", "status": 500}
        payload = b"" if status == 204 else json.dumps(answer).encode()
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", f"Content-Length: {len(payload)}"]
        if payload:
            head.append("Content-Type: application/json")
        head.append("Connection: keep-alive" if keep else "Connection: close")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        await writer.drain()
        return keep
