"""REST and SOAP intake of signed dossiers under concurrent load, against a bare FastAPI
endpoint that echoes the same bodies, in the same run.

    .venv/bin/python bench/intake.py [--duration 10] [--connections 64] [--workers 2]
                                     [--stores sqlite,postgresql] [--targets rest,soap,...]
                                     [--rounds 3]

Each target is a function returning a ``Target`` (how to start its server in a separate
process, and the path to post to); the load generator: ``wrk`` (Debian package ``wrk``) in a
process of its own when installed, else an asyncio generator in this process over keep-alive
connections (bench.rawhttp; ``--client httpx`` for the httpx one it replaced, whose CPU per
request made it the bottleneck), which reports its own CPU per request. Requests are made and
signed before the clock starts (every one a new dossier with its own signed request id), so the
figures are the server's. Prints requests/s, p50/p99 and the ratio to the bare endpoint;
writes bench/results/intake.json.

The hub runs as in production: ``lienthong serve`` (uvicorn, N workers, httptools/uvloop when
installed), SQLite store in a temporary directory (target ``rest``) and, with ``--stores``
naming it, a PostgreSQL database made for the run and dropped afterwards (``rest-pg``; the
server in ``--pg-url``), outbox relay publishing with confirms to the local RabbitMQ (own name
prefix; its exchange and queue are deleted afterwards).

The machine may be shared: the load average before and after each target is recorded, and the
ratio to the bare endpoint measured in the same run is the figure to compare across runs. With
``--rounds N`` every target is measured N times, interleaved, and the medians are reported (a
shared machine's speed was seen to drift by a third within minutes). CPU per request (the
server's process tree and the broker, from /proc) is recorded too: it moves less than requests
per second when the machine is busy.

To add a target (the SOAP intake, say): write ``def soap_target(ctx: Context) -> Target`` and
append it to ``TARGETS``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "intake.json"
CLIENT_ID = "VN:GOV:000.00.00.H56:igate"
API_KEY = "bench-api-key"
GOAL_RPS = 1500.0
GOAL_P99_MS = 100.0
GOAL_SOAP_RPS = 800.0
WARMUP_SECONDS = 2.0


# -- the bare endpoint (run in its own process by `intake.py bare --port P`) -------------------

def bare_app() -> Any:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.body(), status_code=202, media_type="application/json")

    return app


# -- targets -------------------------------------------------------------------------------------

@dataclass
class Context:
    workdir: Path
    workers: int
    amqp_url: str
    prefix: str
    env: dict[str, str] = field(default_factory=dict)
    stores: frozenset[str] = frozenset({"sqlite"})  # the hub's stores to measure
    pg_url: str | None = None  # a database of the run's own, when PostgreSQL is measured


@dataclass
class Target:
    name: str
    command: list[str]
    env: dict[str, str]
    path: str
    ready_path: str
    # (body bytes, extra headers) for request i; made before the clock starts.
    make_request: Callable[[int], tuple[bytes, dict[str, str]]]
    # Sizes the set of distinct requests made beforehand (None: --expected-rps).
    expected_rps: float | None = None
    # The PostgreSQL database the target keeps its store in (see Autovacuum).
    database_url: str | None = None
    # Whether resending a request costs the target what a new one does (the bare echo).
    repeats_are_new: bool = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def dossier_body(i: int, run: str) -> bytes:
    day = 1 + i % 28
    body = {
        "code": f"000.00.00.H56-2501{day:02d}-{1 + i % 9999:04d}",
        "procedure_code": "2.002492",
        "agency_code": "000.00.00.H56",
        "applicant": {"identity_number": "001099012345", "name": "Nguyễn Văn A",
                      "address": "Thanh Hóa"},
        "channel": 2,
        "submitted_at": "2025-01-01T08:00:00+07:00",
        "note": f"bench {run} #{i}",
        "attachments": [{"id": "1", "name": "don.pdf", "url": "https://files.example/1.pdf",
                         "size": 123456, "sha256": "0" * 64}],
    }
    return json.dumps(body, ensure_ascii=False).encode()


def rest_target(ctx: Context) -> Target | None:
    """The hub on a SQLite store of its own."""
    return hub_target(ctx, "rest", None) if "sqlite" in ctx.stores else None


def rest_pg_target(ctx: Context) -> Target | None:
    """The hub on the run's PostgreSQL database."""
    if "postgresql" not in ctx.stores or ctx.pg_url is None:
        return None
    return hub_target(ctx, "rest-pg", ctx.pg_url)


def hub_target(ctx: Context, name: str, store_url: str | None) -> Target:
    from hub.api.auth import sha256_hex
    from hub.envelope import Envelope
    from hub.settings import Settings
    from hub.signing.jws import Signer
    from hub.signing.keys import generate
    from hub.signing.truststore import TrustStore

    data = ctx.workdir / name
    settings = Settings(data_dir=data)
    generate(settings.hub_id).save(settings.keys_dir)
    client = generate(CLIENT_ID)
    TrustStore(settings.trust_dir).add(client.certificate_pem())
    assert client.certificate is not None
    signer = Signer(client.private_key, client.certificate)
    clients = ctx.workdir / "clients.toml"
    clients.write_text(
        "[[clients]]\n"
        f'system_id = "{CLIENT_ID}"\nname = "bench"\n'
        'allowed_types = ["vn.gov.dossier.*"]\nallowed_agencies = ["000.00.00.H56*"]\n'
        f'api_key_sha256 = ["{sha256_hex(API_KEY)}"]\n')
    run = uuid.uuid4().hex[:8]

    def make(i: int) -> tuple[bytes, dict[str, str]]:
        body = dossier_body(i, run)
        env = Envelope(id=str(uuid.uuid4()), source=CLIENT_ID, type="vn.gov.dossier.submitted",
                       subject="-", time=datetime.now(UTC), data=None)
        return body, {"X-API-Key": API_KEY, "X-Signature": signer.sign(body, env),
                      "Content-Type": "application/json"}

    env = {
        "LIENTHONG_DATA_DIR": str(data),
        "LIENTHONG_AMQP_URL": ctx.amqp_url,
        "LIENTHONG_NAME_PREFIX": ctx.prefix,
        "LIENTHONG_CLIENTS_FILE": str(clients),
        # The goal is the server's throughput for one busy upstream system: no rate limit.
        "LIENTHONG_RATE_PER_CLIENT": "1e12",
    }
    if store_url is not None:
        env["LIENTHONG_STORE_URL"] = store_url
    return Target(name, [sys.executable, "-c", "from hub.cli import main; main()", "serve",
                           "--workers", str(ctx.workers), "--log-level", "warning"],
                  env, "/v1/dossiers", "/readyz", make, database_url=store_url)


def bare_target(ctx: Context) -> Target:
    run = uuid.uuid4().hex[:8]

    def make(i: int) -> tuple[bytes, dict[str, str]]:
        return dossier_body(i, run), {"Content-Type": "application/json"}

    return Target("bare", [sys.executable, str(Path(__file__).resolve()), "bare",
                           "--workers", str(ctx.workers)], {}, "/echo", "/docs", make,
                  repeats_are_new=True)


TARGETS: list[Callable[[Context], Target | None]] = [rest_target, rest_pg_target, bare_target]


def extra_targets() -> list[Callable[[Context], Target | None]]:
    """The SOAP intake (bench/intake_soap.py), measured in the same run."""
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from bench.intake_soap import soap_target

    return [soap_target]


# -- running -------------------------------------------------------------------------------------

def start(target: Target, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, **target.env}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([*target.command, "--port", str(port)], env=env, cwd=ROOT)
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{target.name}: the server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{target.ready_path}", timeout=1).status_code \
                    == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{target.name}: not ready after 60 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


WRK_SCRIPT = r"""
local lines = {}
local threads = {}
local counter = 0
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  local file = args[1]
  local nthreads = tonumber(args[2])
  local i = 0
  for line in io.lines(file) do
    if i % nthreads == tid then
      local sep = line:find("\t", 1, true)
      local headers = cjson_headers(line:sub(1, sep - 1))
      table.insert(lines, wrk.format("POST", wrk.path, headers, line:sub(sep + 1)))
    end
    i = i + 1
  end
end
function cjson_headers(text)
  local h = {}
  for k, v in text:gmatch("([^\1]+)\1([^\2]*)\2") do h[k] = v end
  return h
end
wrapped = 0
function request()
  counter = counter + 1
  if counter > #lines then
    counter = 1
    wrapped = wrapped + 1
  end
  return lines[counter]
end
function done(summary, latency, requests)
  local e = summary.errors
  local w = 0
  for _, t in ipairs(threads) do w = w + (t:get("wrapped") or 0) end
  io.write(string.format(
    "RESULT {\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p99_us\": %d, " ..
    "\"max_us\": %d, \"errors\": %d, \"non_2xx\": %d, \"wrapped\": %d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect + e.read + e.write + e.timeout, e.status, w))
end
"""


def write_requests(target: Target, numbers: range, path: Path) -> None:
    with path.open("wb") as fh:
        for i in numbers:
            body, headers = target.make_request(i)
            head = "".join(f"{k}\1{v}\2" for k, v in headers.items()).encode()
            fh.write(head + b"\t" + body.replace(b"\n", b" ") + b"\n")


def run_wrk(url: str, requests: Path, duration: float, connections: int,
            threads: int) -> dict[str, Any]:
    script = requests.with_suffix(".lua")
    script.write_text(WRK_SCRIPT)
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s",
         "--timeout", "10s", "-s", str(script), url, "--", str(requests), str(threads)],
        capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    raw = json.loads(line.removeprefix("RESULT "))
    seconds = raw["duration_us"] / 1e6
    return {"requests": raw["requests"], "seconds": round(seconds, 2),
            "rps": round(raw["requests"] / seconds, 1), "p50_ms": raw["p50_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000, "max_ms": raw["max_us"] / 1000,
            "errors": raw["errors"], "non_2xx": raw["non_2xx"], "generator": "wrk",
            # Connections that ran out of distinct requests and sent some again (answered as
            # resubmissions, cheaper than new ones): raise --expected-rps.
            "repeated": raw["wrapped"]}


async def _generate(url: str, requests: list[tuple[bytes, dict[str, str]]], duration: float,
                    connections: int, client: str) -> dict[str, Any]:
    """The load from this process, over ``client``: ``raw`` (bench.rawhttp, the requests'
    bytes made beforehand) or ``httpx`` (what the generator was, for comparison). Reports the
    generator's own CPU per request too."""
    import resource

    from bench.rawhttp import RawClient

    latencies: list[float] = []
    bad = 0
    next_i = 0
    parts = url.split("/", 3)
    base, path = "/".join(parts[:3]), "/" + parts[3]
    if client == "raw":
        raw = RawClient(base, connections, timeout=10)
        prepared = [raw.format("POST", path, body, headers) for body, headers in requests]

        async def post(i: int) -> int:
            return (await raw.send(prepared[i])).status_code

        close = raw.aclose
    else:
        import httpx

        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        http = httpx.AsyncClient(limits=limits, timeout=10)

        async def post(i: int) -> int:
            body, headers = requests[i]
            return (await http.post(url, content=body, headers=headers)).status_code

        close = http.aclose
    end = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal next_i, bad
        while time.perf_counter() < end:
            i = next_i % len(requests)
            next_i += 1
            t0 = time.perf_counter()
            status = await post(i)
            latencies.append(time.perf_counter() - t0)
            bad += status >= 300

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(connections)))
    finally:
        await close()
    seconds = time.perf_counter() - began
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime)
    latencies.sort()
    return {"requests": len(latencies), "seconds": round(seconds, 2),
            "rps": round(len(latencies) / seconds, 1),
            "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
            "max_ms": latencies[-1] * 1000, "errors": 0, "non_2xx": bad, "generator": client,
            "generator_cpu_ms_per_request": round(cpu * 1000 / max(len(latencies), 1), 3)}


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime, all threads


def _process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _pids_named(*names: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in names:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def cpu_seconds(server: int) -> dict[str, float]:
    """CPU seconds used so far by the server's process tree, the broker and the PostgreSQL
    server (its backends are processes of their own; idle when the store is SQLite): with the
    requests served, CPU per request is a figure a shared machine disturbs far less than
    requests per second. A backend that ends between two readings is not counted."""
    tick = os.sysconf("SC_CLK_TCK")
    return {"server": sum(_cpu_ticks(p) for p in _process_tree(server)) / tick,
            "broker": sum(_cpu_ticks(p) for p in _pids_named("beam.smp")) / tick,
            "database": sum(_cpu_ticks(p) for p in _pids_named("postgres")) / tick}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure(target: Target, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    rate = target.expected_rps or args.expected_rps
    count = int(args.duration * rate * 1.5) + 1000
    # The warm-up sends requests of its own: resent in the measured run they would be answered
    # as resubmissions (by their idempotency keys), which cost less than new dossiers.
    warm = range(count, count + int(WARMUP_SECONDS * rate * 1.5) + 500)
    requests = workdir / f"{target.name}.requests"
    warmup = workdir / f"{target.name}.warmup"
    print(f"{target.name}: making {count + len(warm)} signed requests...", flush=True)
    write_requests(target, range(count), requests)
    write_requests(target, warm, warmup)
    port = free_port()
    proc = start(target, port)
    url = f"http://127.0.0.1:{port}{target.path}"
    load_before = load_average()
    maintenance = Autovacuum.start(target.database_url) if target.database_url else None
    try:
        if shutil.which("wrk"):
            # A short warm-up (connections, caches), then the measured run.
            run_wrk(url, warmup, WARMUP_SECONDS, args.connections, args.threads)
            cpu_before = cpu_seconds(proc.pid)
            result = run_wrk(url, requests, args.duration, args.connections, args.threads)
        else:
            reqs = [target.make_request(i) for i in range(count)]
            cpu_before = cpu_seconds(proc.pid)
            result = asyncio.run(_generate(url, reqs, args.duration, args.connections,
                                           args.client))
        cpu_after = cpu_seconds(proc.pid)
    finally:
        if maintenance is not None:
            maintenance.stop()
        stop(proc)
    result["cpu_ms_per_request"] = {
        name: round((cpu_after[name] - cpu_before[name]) * 1000 / max(result["requests"], 1), 3)
        for name in cpu_before}
    result["load_before"], result["load_after"] = load_before, load_average()
    if maintenance is not None:
        result["maintenance"] = maintenance.describe()
        print(f"{target.name}: {result['maintenance']}", flush=True)
    if result.get("repeated") and not target.repeats_are_new:
        print(f"{target.name}: WARNING: requests ran out and were sent again; the figures "
              "include resubmissions; raise --expected-rps", flush=True)
    cpu = result["cpu_ms_per_request"]
    print(f"{target.name}: {result['rps']:.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
          f"p99 {result['p99_ms']:.1f} ms, non-2xx {result['non_2xx']}, errors "
          f"{result['errors']}; CPU per request: server {cpu['server']:.2f} ms, broker "
          f"{cpu['broker']:.2f} ms, database {cpu['database']:.2f} ms; load average "
          f"{load_before[0]:.2f} -> "
          f"{result['load_after'][0]:.2f}"
          + (f"; generator {result['generator_cpu_ms_per_request']:.2f} ms per request"
             if "generator_cpu_ms_per_request" in result else ""), flush=True)
    return result


class Autovacuum:
    """What PostgreSQL's autovacuum does for the hub's tables in production, done by the bench
    when the server has it off (this machine's CI configuration does: tests run faster). Without
    it a fresh database is never analyzed, so plans made while its tables were empty (a
    connection's prepared statements keep theirs) go on scanning them whole as they grow, and
    the outbox's updated rows leave dead tuples every claim wades through: the figures would be
    those of a database no deployment runs. Every ``interval`` seconds: VACUUM ANALYZE of the
    database. Its CPU counts as the database's."""

    def __init__(self, url: str, interval: float) -> None:
        import threading

        self.url = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.interval = interval
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench autovacuum", daemon=True)

    @classmethod
    def start(cls, url: str, interval: float = 2.0) -> Autovacuum | None:
        """Started when the server's own autovacuum is off; None when it is on."""
        import psycopg

        plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(plain, autocommit=True) as conn:
            row = conn.execute("SHOW autovacuum").fetchone()
        if row is not None and row[0] == "on":
            return None
        maintenance = cls(url, interval)
        maintenance._thread.start()
        return maintenance

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(self.interval):
                conn.execute("VACUUM (ANALYZE)")
                self.runs += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def describe(self) -> str:
        return (f"server autovacuum off: the bench ran VACUUM (ANALYZE) every "
                f"{self.interval:g} s ({self.runs} times)")


def scratch_database(admin_url: str) -> tuple[str, Callable[[], None]]:
    """A PostgreSQL database of the run's own (URL for the hub) and how to drop it."""
    import psycopg

    name = f"ltbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.split("://", 1)[1].rsplit("/", 1)[0]

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"postgresql+psycopg://{base}/{name}", drop


def declare(amqp_url: str, prefix: str) -> Callable[[], None]:
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    ch = conn.channel()
    ch.exchange_declare(f"{prefix}.events", "topic", durable=True)
    ch.queue_declare(f"{prefix}.sink", durable=True, arguments={"x-max-length": 2_000_000})
    ch.queue_bind(f"{prefix}.sink", f"{prefix}.events", "#")
    conn.close()

    def cleanup() -> None:
        c = pika.BlockingConnection(pika.URLParameters(amqp_url))
        channel = c.channel()
        channel.queue_delete(f"{prefix}.sink")
        channel.exchange_delete(f"{prefix}.events")
        c.close()

    return cleanup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--expected-rps", type=float, default=4000.0,
                        help="sizes the set of distinct pre-signed requests")
    parser.add_argument("--amqp-url", default=os.environ.get(
        "LIENTHONG_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--stores", default="sqlite",
                        help="stores to measure the hub with: sqlite, postgresql or both "
                             "(comma separated)")
    parser.add_argument("--pg-url", default=os.environ.get(
        "LIENTHONG_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test"),
                        help="PostgreSQL server (any database) where the run makes its own")
    parser.add_argument("--targets", default="rest,rest-pg,bare,soap",
                        help="targets to measure (comma separated); bare is always measured, "
                             "as the baseline")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw",
                        help="the load generator's HTTP client when wrk is not installed: "
                             "bench.rawhttp (lean) or httpx (for comparison)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every target this many times, interleaved, and report "
                             "medians (a shared machine's speed drifts within minutes)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    wanted = {t.strip() for t in args.targets.split(",") if t.strip()} | {"bare"}
    stores = {s.strip() for s in args.stores.split(",") if s.strip()}
    if not stores or stores - {"sqlite", "postgresql"}:
        parser.error(f"--stores {args.stores!r}: name sqlite, postgresql or both")

    prefix = f"ltbench{uuid.uuid4().hex[:6]}"
    cleanup = declare(args.amqp_url, prefix)
    workdir = Path(tempfile.mkdtemp(prefix="lienthong-bench-"))
    rounds: dict[str, list[dict[str, Any]]] = {}
    try:
        for number in range(args.rounds):
            # Each round from scratch (keys, stores, requests): a round sends new dossiers.
            ctx = Context(workdir=workdir / f"round{number}", workers=args.workers,
                          amqp_url=args.amqp_url, prefix=prefix, stores=frozenset(stores))
            ctx.workdir.mkdir()
            drop_database: Callable[[], None] | None = None
            if "postgresql" in stores and "rest-pg" in wanted:
                ctx.pg_url, drop_database = scratch_database(args.pg_url)
            try:
                if args.rounds > 1:
                    print(f"-- round {number + 1} of {args.rounds}", flush=True)
                for make_target in [*TARGETS, *extra_targets()]:
                    target = make_target(ctx)
                    if target is None or target.name not in wanted:
                        continue
                    rounds.setdefault(target.name, []).append(
                        measure(target, args, ctx.workdir))
            finally:
                if drop_database is not None:
                    drop_database()
                shutil.rmtree(ctx.workdir, ignore_errors=True)
    finally:
        cleanup()
        shutil.rmtree(workdir, ignore_errors=True)

    summary = summarize(rounds)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "at": datetime.now(UTC).isoformat(), "cpus": os.cpu_count(),
        "params": {"duration": args.duration, "connections": args.connections,
                   "workers": args.workers, "wrk_threads": args.threads,
                   "stores": sorted(stores), "rounds": args.rounds},
        "targets": {name: _median_round(runs) for name, runs in rounds.items()},
        "rounds": rounds, **summary}, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


def _median_round(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda r: float(r["rps"]))[len(runs) // 2]


def summarize(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per target its median round (by requests/s), and its ratio to the bare endpoint: the
    median of the ratios of each round, whose bare endpoint ran minutes apart at most. Prints
    the figures and whether each goal is met."""
    import statistics

    summary: dict[str, Any] = {"goal": {"rps": GOAL_RPS, "p99_ms": GOAL_P99_MS,
                                        "soap_rps": GOAL_SOAP_RPS}}
    bare_runs = rounds["bare"]
    for name, goal_rps, goal_p99 in (("rest", GOAL_RPS, GOAL_P99_MS),
                                     ("rest-pg", GOAL_RPS, GOAL_P99_MS),
                                     ("soap", GOAL_SOAP_RPS, None)):
        runs = rounds.get(name)
        if not runs:
            continue
        key = name.replace("-", "_")
        median = _median_round(runs)
        ratio = statistics.median(run["rps"] / bare["rps"]
                                  for run, bare in zip(runs, bare_runs, strict=True))
        summary[f"{key}_vs_bare_rps"] = round(ratio, 4)
        summary[f"{key}_rps_rounds"] = [run["rps"] for run in runs]
        summary[f"{key}_goal_met"] = (
            median["rps"] >= goal_rps and (goal_p99 is None or median["p99_ms"] < goal_p99)
            and median["non_2xx"] == 0 and median["errors"] == 0)
        goal = f">= {goal_rps:.0f} req/s" + (f", p99 < {goal_p99:.0f} ms" if goal_p99 else "")
        each = ", ".join(f"{run['rps']:.0f}" for run in runs)
        print(f"{name}: median {median['rps']:.0f} req/s (p99 {median['p99_ms']:.1f} ms, rounds "
              f"{each}); / bare: {ratio:.3f}; goal "
              f"({goal}): {'met' if summary[f'{key}_goal_met'] else 'NOT met'}")
    return summary


def serve_bare(argv: list[str]) -> None:
    import importlib.util

    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    uvicorn.run("bench.intake:bare_app", factory=True, host="127.0.0.1", port=args.port,
                workers=args.workers, log_level="warning", access_log=False,
                http="httptools" if importlib.util.find_spec("httptools") else "h11",
                loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "bare":
        serve_bare(sys.argv[2:])
    else:
        main()
