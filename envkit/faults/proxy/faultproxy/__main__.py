"""``python3 -m faultproxy [--control HOST:PORT] [--seed S] [--populate JSON]``

Prints ``fault-proxy control listening on HOST:PORT`` once the control API answers (the port is the
chosen one when 0 was asked for), then one line per change; exits cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
import sys

from .control import ApiError, Control
from .relay import split_address


async def main(control_at: str, seed: str, populate: str | None) -> int:
    control = Control(seed)
    if populate:
        try:
            for item in json.loads(populate):
                await control.create(item, replace=True)
        except (ValueError, TypeError, ApiError) as exc:
            print(f"fault-proxy: --populate: {exc}", file=sys.stderr, flush=True)
            return 2
    host, port = split_address(control_at)
    server = await asyncio.start_server(control.serve, host, port, reuse_address=True)
    bound = server.sockets[0].getsockname()
    print(f"fault-proxy control listening on {host}:{bound[1]} seed={seed}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    for proxy in list(control.proxies.values()):
        await proxy.disable()
    return 0


def run() -> None:
    parser = argparse.ArgumentParser(prog="faultproxy", description="TCP fault proxy with a Toxiproxy-style API")
    parser.add_argument("--control", default="0.0.0.0:8474", help="control API address (default 0.0.0.0:8474)")
    parser.add_argument("--seed", default=None, help="seed for toxicity, jitter and corruption (default: random)")
    parser.add_argument("--populate", default=None, help="JSON list of proxies to create at start")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else secrets.token_hex(4)
    sys.exit(asyncio.run(main(args.control, seed, args.populate)))


if __name__ == "__main__":
    run()
