"""The REST intake's CPU per request without sockets: the hub's ASGI app (``create_app``, SQLite,
relay off, SOAP off) called directly with signed dossiers, ``--concurrency`` at a time, after a
warm-up; prints the process's CPU (event loop and writer thread) per request. Steadier than
bench/intake.py on a shared machine, where how many requests share a commit follows the
machine's load; it leaves out uvicorn, the sockets and the relay.

    .venv/bin/python bench/intake_inproc.py [--requests 2000] [--concurrency 64]

To compare two commits, run it from a checkout of each, alternately (``git archive <commit> |
tar -x -C DIR``, then ``DIR/bench/intake_inproc.py``): it imports the hub from its own tree.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    import uvloop

    import hub
    from bench.intake import Context, hub_target

    assert hub.__file__ is not None and hub.__file__.startswith(str(ROOT)), hub.__file__
    work = Path(tempfile.mkdtemp(prefix="lienthong-inproc-"))
    ctx = Context(workdir=work, workers=1, amqp_url="amqp://unused", prefix="inproc")
    target = hub_target(ctx, "rest", None)
    os.environ.update(target.env)
    total = args.requests + args.warmup
    requests = [target.make_request(i) for i in range(total)]

    from hub.api.app import create_app
    from hub.settings import Settings

    app = create_app(Settings(), relay=False, soap=False)
    statuses: list[int] = []

    async def one(body: bytes, headers: dict[str, str]) -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:  # the request is whole: a second receive waits for a disconnect
                await asyncio.Event().wait()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": target.path,
                 "raw_path": target.path.encode(), "root_path": "", "query_string": b"",
                 "headers": [*raw, (b"content-length", str(len(body)).encode()),
                             (b"host", b"127.0.0.1")],
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {}}
        await app(scope, receive, send)

    async def send_all(items: list[tuple[bytes, dict[str, str]]]) -> None:
        pending = iter(items)

        async def sender() -> None:
            for body, headers in pending:
                await one(body, headers)

        await asyncio.gather(*(sender() for _ in range(args.concurrency)))

    async def run() -> tuple[float, float]:
        async with app.router.lifespan_context(app):
            await send_all(requests[args.requests:])
            before = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            await send_all(requests[:args.requests])
            after = resource.getrusage(resource.RUSAGE_SELF)
            took = time.perf_counter() - started
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        return cpu, took

    cpu, took = uvloop.run(run())
    refused = [s for s in statuses if s != 202]
    print(f"intake in process: {cpu * 1000 / args.requests:.3f} ms of CPU per request, "
          f"{args.requests / took:.0f} requests/s, {len(refused)} not 202 "
          f"{sorted(set(refused))}; load average {os.getloadavg()[0]:.2f}")
    if refused:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
