"""The fault proxy on a healthy connection (issue 13): what it adds to a request/response and what share of
the direct throughput passes through it.

    .venv/bin/python benchmarks/bench_faults.py [--where local,containers,host] [--quick] [--out DIR]

Three places, each measured direct and through the proxy, alternately, in one run:

- ``local``: the proxy program (envkit/faults/proxy/faultproxy) as a process on 127.0.0.1, in front of a
  server process; the client is this process. No engine needed: the proxy's own cost.
- ``containers``: a run of two containers (``box``: the servers, ``client``); the proxy is envkit's, applied
  as a fault on ``box`` that never triggers (a latency toxic with probability 0: the proxy is on the
  path, no toxic on the connection). The client runs inside ``client`` (``docker exec``).
- ``host``: the same run, from this process through ``box``'s published ports (the engine's port
  forwarding is on both paths).

Per place: round trips of 64 bytes over one kept connection (p50/p99), new connections (connect, 64 bytes
there and back, close; p50/p99), and throughput client → service (``upstream``) and service → client
(``downstream``). Written to ``<out>/faults.json`` (default benchmarks/results) with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import envkit  # noqa: E402
from envkit.faults import CONTEXT, FaultProxyClient, ProxySpec  # noqa: E402

ECHO, SINK, SOURCE = 7000, 7001, 7002

# The servers (a thread per connection, standard library): echo; sink (reads to EOF, answers the byte
# count); source (reads an 8-byte size, sends that many bytes, closes).
SERVER = r'''
import socket, sys, threading
host = sys.argv[1] if len(sys.argv) > 1 else "0.0.0.0"
BLOCK = memoryview(bytes(range(256)) * 4096)
def echo(s):
    while data := s.recv(65536):
        s.sendall(data)
def sink(s):
    buf, n = bytearray(1 << 20), 0
    while k := s.recv_into(buf):
        n += k
    s.sendall(n.to_bytes(8, "big"))
def source(s):
    want = b""
    while len(want) < 8:
        want += s.recv(8 - len(want))
    left = int.from_bytes(want, "big")
    while left > 0:
        left -= s.send(BLOCK[:min(left, len(BLOCK))])
def serve(port, handler):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(1024)
    while True:
        s, _ = ls.accept()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        def run(s=s):
            try:
                handler(s)
            except OSError:
                pass
            finally:
                s.close()
        threading.Thread(target=run, daemon=True).start()
for port, handler in ((7000, echo), (7001, sink), (7002, source)):
    threading.Thread(target=serve, args=(port, handler), daemon=True).start()
print("servers ready", flush=True)
threading.Event().wait()
'''

# The client: python3 -c CLIENT HOST ECHO SINK SOURCE KEPT NEW MEGABYTES -> one JSON line.
CLIENT = r'''
import json, socket, sys, time
host, echo, sink, source, kept, new, mb = sys.argv[1], *map(int, sys.argv[2:8])
MSG = b"x" * 64
def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, round(q * (len(v) - 1)))]
def rt(s):
    s.sendall(MSG)
    got = 0
    while got < 64:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed")
        got += len(d)
def conn(port):
    s = socket.create_connection((host, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s
out = {}
s = conn(echo)
for _ in range(50):
    rt(s)
t = []
for _ in range(kept):
    a = time.perf_counter(); rt(s); t.append((time.perf_counter() - a) * 1e6)
s.close()
out["kept_us"] = {"p50": pct(t, 0.5), "p99": pct(t, 0.99), "n": kept}
t = []
for _ in range(new):
    a = time.perf_counter()
    s = conn(echo); rt(s); s.close()
    t.append((time.perf_counter() - a) * 1e6)
out["new_us"] = {"p50": pct(t, 0.5), "p99": pct(t, 0.99), "n": new}
total = mb << 20
block = memoryview(bytes(1 << 20))
s = conn(sink)
a = time.perf_counter()
left = total
while left > 0:
    left -= s.send(block[:min(left, len(block))])
s.shutdown(socket.SHUT_WR)
got = b""
while len(got) < 8 and (d := s.recv(8)):
    got += d
out["upstream_MBps"] = total / (time.perf_counter() - a) / 1e6
assert int.from_bytes(got, "big") == total, got
s.close()
s = conn(source)
buf, n = bytearray(1 << 20), 0
a = time.perf_counter()
s.sendall(total.to_bytes(8, "big"))
while k := s.recv_into(buf):
    n += k
out["downstream_MBps"] = total / (time.perf_counter() - a) / 1e6
assert n == total, n
s.close()
print(json.dumps(out))
'''

DOCKERFILE = """FROM debian:bookworm-slim
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \\
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/*
USER 65534:65534
"""


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def client_here(host: str, ports: tuple[int, int, int], kept: int, new: int, mb: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", CLIENT, host, *map(str, ports), str(kept), str(new), str(mb)],
                          capture_output=True, text=True, timeout=600, check=True)
    return dict(json.loads(done.stdout))


def _ready(proc: subprocess.Popen[str], marker: str) -> str:
    assert proc.stdout is not None
    while line := proc.stdout.readline():
        if marker in line:
            return line
    raise RuntimeError(f"{proc.args!r} exited before {marker!r}: {proc.wait()}")


def _start_proxy(context: Path) -> tuple[subprocess.Popen[str], FaultProxyClient]:
    proc = subprocess.Popen([sys.executable, "-m", "faultproxy", "--control", "127.0.0.1:0", "--seed", "bench"],
                            cwd=context, stdout=subprocess.PIPE, text=True)
    line = _ready(proc, "control listening on")
    return proc, FaultProxyClient(port=int(line.split()[4].rpartition(":")[2]))


def local(rounds: int, kept: int, new: int, mb: int, before: Path | None) -> dict[str, list[dict[str, Any]]]:
    """The proxy program and the servers as processes on 127.0.0.1; this process's child is the client.
    With ``before`` (a folder holding another version's faultproxy/), that version is measured too, in
    the same rounds: direct, this version, the other, in turn."""
    servers = subprocess.Popen([sys.executable, "-u", "-c", SERVER, "127.0.0.1"], stdout=subprocess.PIPE, text=True)
    procs = [servers]
    try:
        _ready(servers, "servers ready")
        paths: dict[str, tuple[int, ...]] = {"direct": (ECHO, SINK, SOURCE)}
        for path, context in (("proxy", CONTEXT), ("before", before)):
            if context is None:
                continue
            proc, api = _start_proxy(context)
            procs.append(proc)
            paths[path] = tuple(api.create(ProxySpec(f"p{p}", "127.0.0.1:0", f"127.0.0.1:{p}")).listen_port
                                for p in (ECHO, SINK, SOURCE))
        out: dict[str, list[dict[str, Any]]] = {path: [] for path in paths}
        for _ in range(rounds):
            for path, ports in paths.items():
                out[path].append(client_here("127.0.0.1", ports, kept, new, mb))  # type: ignore[arg-type]
        return out
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(10)


def blueprint(folder: Path) -> dict[str, Any]:
    # The context's folder name goes into the image's tag: a fixed one, so every run (each in a temporary
    # folder of its own) reuses one tag instead of leaving one more behind.
    (folder / "image").mkdir()
    (folder / "image" / "Dockerfile").write_text(DOCKERFILE, encoding="utf-8")
    box = {"build": "./image", "command": ["python3", "-u", "-c", SERVER], "ports": [ECHO, SINK, SOURCE],
           "ready": {"tcp": ECHO}}
    return {"name": "bench-faults", "services": {"box": box, "client": {"build": "./image",
                                                                       "command": ["sleep", "infinity"]}}}


def in_containers(rounds: int, kept: int, new: int, mb: int, places: set[str]) -> dict[str, Any]:
    """A run of two containers; the proxy as envkit applies it (a fault that never triggers)."""
    results: dict[str, Any] = {p: {"direct": [], "proxy": []} for p in places}
    with tempfile.TemporaryDirectory() as tmp, envkit.up(blueprint(Path(tmp)), name="bench-faults",
                                                                   directory=tmp) as env:
        results["run"] = env.run_id
        published = tuple(env.port("box", p) for p in (ECHO, SINK, SOURCE))

        def measure(path: str) -> None:
            if "containers" in places:
                args = ["python3", "-c", CLIENT, "box", str(ECHO), str(SINK), str(SOURCE), str(kept), str(new), str(mb)]
                done = env.exec("client", args)
                results["containers"][path].append(json.loads(done.output.strip().splitlines()[-1]))
            if "host" in places:
                results["host"][path].append(client_here("127.0.0.1", published, kept, new, mb))  # type: ignore[arg-type]

        for _ in range(rounds):
            measure("direct")
            with env.fault("box", "latency", latency=0, probability=0, direction="both"):
                measure("proxy")
    return results


def summary(pairs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians over rounds of each figure, and the proxy's cost paired by round (a round measures direct,
    then the proxy, within seconds, so the machine's load changes less between the two): the median of
    the rounds' added µs (p50, p99) and of the rounds' throughput shares."""
    def med(values: list[float]) -> float:
        ordered = sorted(values)
        mid = len(ordered) // 2
        return float(ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2)

    rounds = list(zip(pairs["direct"], pairs["proxy"], strict=True))
    out: dict[str, Any] = {}
    for key in ("kept_us", "new_us"):
        for q in ("p50", "p99"):
            out[f"{key[:-3]}_{q}_us"] = {"direct": round(med([d[key][q] for d, _ in rounds]), 1),
                                         "proxy": round(med([p[key][q] for _, p in rounds]), 1),
                                         "added": round(med([p[key][q] - d[key][q] for d, p in rounds]), 1)}
    for key in ("upstream_MBps", "downstream_MBps"):
        shares = [p[key] / d[key] for d, p in rounds]
        out[key] = {"direct": round(med([d[key] for d, _ in rounds])), "proxy": round(med([p[key] for _, p in rounds])),
                    "share": round(med(shares), 2), "share_range": [round(min(shares), 2), round(max(shares), 2)]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--where", default="local,containers,host")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--megabytes", type=int, default=128, help="per throughput transfer")
    ap.add_argument("--quick", action="store_true", help="one round, small samples (the test suite's smoke run)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--before", type=Path, default=None,
                    help="local: also measure the faultproxy package of this folder (another version), same rounds")
    args = ap.parse_args()
    places = {w.strip() for w in args.where.split(",") if w.strip()}
    if unknown := places - {"local", "containers", "host"}:
        ap.error(f"--where: unknown {', '.join(sorted(unknown))} (local, containers, host)")
    rounds, kept, new, mb = (1, 200, 50, 16) if args.quick else (args.rounds, 2000, 300, args.megabytes)
    document: dict[str, Any] = {"schema": "envkit.bench.faults/v1", "mode": "quick" if args.quick else "full",
                                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
                                "host": socket.gethostname(), "loadavg_start": loadavg(),
                                "samples": {"kept": kept, "new": new, "megabytes": mb, "rounds": rounds}}
    raw: dict[str, Any] = {}
    if "local" in places:
        raw["local"] = local(rounds, kept, new, mb, args.before)
        if "before" in raw["local"]:
            raw["local_before"] = {"direct": raw["local"]["direct"], "proxy": raw["local"].pop("before")}
    if places & {"containers", "host"}:
        raw.update(in_containers(rounds, kept, new, mb, places & {"containers", "host"}))
    document["loadavg_end"] = loadavg()
    document["run"] = raw.pop("run", None)
    document["results"] = {place: summary(pairs) for place, pairs in raw.items()}
    document["raw"] = raw
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"loadavg": [document["loadavg_start"], document["loadavg_end"]], **document["results"]},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
