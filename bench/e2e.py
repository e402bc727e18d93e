"""End-to-end benchmark: what a province feels, from the hub's 202 to the portal's receipt.

The hub runs as a province runs it, each part a process of its own: `lienthong serve` (REST
intake and outbox relay), `lienthong worker npsp` (one or several processes, the timeline
recorder included, or with `--recorder own` in a process of its own, or with `--recorder none`
disabled in the topology) and the portal simulator
(`python -m adapters.npsp.simulator`) answering after a configurable latency, with the portal
adapter's rate limit lifted. A load generator
sends signed dossiers through the REST intake; each dossier is submitted, then its status is
changed, so the simulator also checks one dossier's order (status 1 must reach it before 2).

For every combination of store, worker processes, where the recorder runs and destination
latency it measures:
- offered load: `--rate` dossiers per second for `--seconds`, every event timed from its 202 to
  its arrival at the simulator (p50/p99), and the dossiers per second delivered;
- backlog: with the workers stopped, `--backlog` dossiers are taken in and relayed to the work
  queue; then the workers start, and the drain rate is dossiers per second from the first
  delivery to the last (and from the workers' start);
- CPU per delivered dossier of every process: intake, workers, broker, simulator (and the
  PostgreSQL server, machine-wide, when it is the store);
and, as the baseline of the same run, the bare pika relay of `bench/relay.py`.

The load comes from `--generators` processes of their own (one Python process signing and
sending over httpx spent about 3 ms of CPU per request, so one alone could not offer 300
dossiers a second on this machine; they now send over bench.rawhttp), sharing
`--connections` connections to the intake, which runs `--serve-workers` processes. The offered
phase's requests are all signed before it starts; the report says what the intake took in
(`rate_achieved`) beside what was offered, and the generators' own CPU per dossier.
`--phases backlog` skips the offered phase.

    .venv/bin/python bench/e2e.py                       # the full matrix (long)
    .venv/bin/python bench/e2e.py --quick               # one small round of each phase
    .venv/bin/python bench/e2e.py --latency 200 --processes 1,2 --stores sqlite
    .venv/bin/python bench/e2e.py --latency 0 --processes 1 --stores sqlite --phases backlog \
        --backlog 1000                                  # a worker's CPU per dossier

Prints the figures and writes JSON to bench/results/e2e-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import multiprocessing
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pika

from hub.envelope import Envelope
from hub.model import VN_TZ
from hub.signing import Signer, TrustStore, generate, load_signer
from hub.simulation import free_port, free_ports
from hub.testing.waiting import wait_for

# Run as a script, the repository's root is not on the path (bench/ is).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.rawhttp import Answer, RawClient, TransportError

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
LIENTHONG = str(Path(PY).parent / "lienthong")
HUB = "VN:GOV:000.00.00.G22:lienthong"
PROVINCE = "VN:GOV:000.00.00.H56:igate"
AGENCY = "000.00.00.H56"
PORTAL_USER, PORTAL_PASSWORD = "bench", secrets.token_urlsafe(12)
AMQP = os.environ.get("LIENTHONG_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
# A dossier's statuses in the order the bench sends them (allowed transitions of hub.model).
STATUSES = [1, 2, 4, 9, 10]
PG_ADMIN = os.environ.get("BENCH_PG", "postgresql://127.0.0.1:5432/test")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# -- CPU of processes (and their children) ----------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children")
                          .read_text().split()]
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live descendants."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    stack = [pid]
    while stack:
        p = stack.pop()
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            stack += _children(p)
    return total


def pids_named(name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


class CpuMeter:
    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.groups.items()}

    def used(self) -> dict[str, float]:
        now = self._read()
        return {name: now[name] - self.start[name] for name in now}


# -- the deployment -----------------------------------------------------------------------------


@dataclass
class Deployment:
    store: str
    processes: int
    latency_ms: int
    serve_workers: int = 1
    # "inside": the timeline recorder in each worker process (`lienthong worker npsp`); "own":
    # in a process of its own (`lienthong worker npsp --no-recorder`, `lienthong worker
    # timeline`); "none": no recorder and no timeline queue (a copy of the topology file that
    # disables it): every event's timeline entry is written where it is born anyway, and the
    # portal's answers cause no events, so nothing goes to the unroutable queue either.
    recorder: str = "inside"
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lt-e2e-")))
    prefix: str = field(default_factory=lambda: f"e2e{uuid.uuid4().hex[:8]}")
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    database: str | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "LIENTHONG_DATA_DIR": str(self.root / "data"),
            "LIENTHONG_NAME_PREFIX": self.prefix,
            "LIENTHONG_AMQP_URL": AMQP,
            "NPSP_USERNAME": PORTAL_USER,
            "NPSP_PASSWORD": PORTAL_PASSWORD,
        })
        if self.database:
            server = PG_ADMIN.split("://", 1)[1].rsplit("/", 1)[0]
            env["LIENTHONG_STORE_URL"] = f"postgresql+psycopg://{server}/{self.database}"
        env["LIENTHONG_TOPOLOGY_FILE"] = str(self.topology_file)
        return env

    @property
    def topology_file(self) -> Path:
        """The shipped topology, or for ``recorder="none"`` a copy with the timeline disabled."""
        shipped = ROOT / "mappings" / "topology.toml"
        if self.recorder != "none":
            return shipped
        copy = self.root / "topology.toml"
        if not copy.exists():
            text = shipped.read_text(encoding="utf-8")
            table = "[destinations.timeline]\n"
            if table not in text:
                raise SystemExit(f"e2e: {shipped} has no {table.strip()} table to disable")
            copy.write_text(text.replace(table, table + "enabled = false\n"), encoding="utf-8")
        return copy

    def set_up(self) -> tuple[Signer, str]:
        data = self.root / "data"
        (data / "adapters").mkdir(parents=True)
        if self.store == "postgresql":
            import psycopg

            self.database = self.prefix
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.database}"')
        trust = TrustStore(data / "trust")
        for system in (HUB, PROVINCE):
            material = generate(system, "ES256")
            material.save(data / "keys")
            trust.add(material.certificate_pem())
        api_key = secrets.token_urlsafe(24)
        clients = data / "clients.toml"
        clients.write_text(
            "[[clients]]\n"
            f'system_id = "{PROVINCE}"\nname = "bench province"\n'
            'allowed_types = ["vn.gov.dossier.submitted", "vn.gov.dossier.status-changed"]\n'
            f'allowed_agencies = ["{AGENCY}*"]\n'
            f'api_key_sha256 = ["{hashlib.sha256(api_key.encode()).hexdigest()}"]\n',
            encoding="utf-8")
        os.environ["LIENTHONG_CLIENTS_FILE"] = str(clients)
        self.sim_port = free_port()
        self.hub_port = free_port()
        # The portal's own rate limit (50/s by default) is lifted: the bench measures the hub.
        (data / "adapters" / "npsp.toml").write_text(
            f'base_url = "http://127.0.0.1:{self.sim_port}"\n\n[policy]\n'
            "rate_per_second = 100000.0\nburst = 100000\n", encoding="utf-8")
        return load_signer(data / "keys", PROVINCE), api_key

    def start(self, name: str, args: list[str], extra_env: dict[str, str] | None = None,
              ) -> subprocess.Popen[bytes]:
        env = self.env() | (extra_env or {})
        env["LIENTHONG_CLIENTS_FILE"] = str(self.root / "data" / "clients.toml")
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def run(self, args: list[str]) -> None:
        env = self.env()
        env["LIENTHONG_CLIENTS_FILE"] = str(self.root / "data" / "clients.toml")
        done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"e2e: {' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    def boot(self) -> None:
        self.start("simulator", [PY, "-m", "adapters.npsp.simulator", "--port",
                                 str(self.sim_port), "--username", PORTAL_USER,
                                 "--password", PORTAL_PASSWORD])
        sim = f"http://127.0.0.1:{self.sim_port}"
        wait_for(lambda: _ok(f"{sim}/_sim/calls"), 30, "the simulator", interval=0.05)
        httpx.post(f"{sim}/_sim/faults", json={"slow_seconds": self.latency_ms / 1000})
        self.run([LIENTHONG, "topology", "apply"])
        self.start("serve", [LIENTHONG, "serve", "--host", "127.0.0.1", "--port",
                             str(self.hub_port), "--log-level", "warning",
                             "--workers", str(self.serve_workers)])
        # A deadline, not a wait: two intake processes start in 20 to 60 s on a loaded machine.
        wait_for(lambda: _ok(f"{self.hub_url}/readyz"), 180, "the hub to be ready",
                 interval=0.05)

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}"

    def start_workers(self) -> None:
        # Each worker process answers /metrics on a port of its own: the default (9180) would
        # clash with another worker on this machine, a test's or another bench's.
        own = self.recorder == "own"
        self.metrics_port = free_ports(self.processes + own)
        flag = {"own": ["--no-recorder"]}.get(self.recorder, [])
        self.start("worker", [LIENTHONG, "worker", "npsp", "--processes", str(self.processes),
                              *flag],
                   {"LIENTHONG_WORKER_METRICS_PORT": str(self.metrics_port)})
        queues = self.work_queues
        if own:
            self.start("recorder", [LIENTHONG, "worker", "timeline"],
                       {"LIENTHONG_WORKER_METRICS_PORT": str(self.metrics_port + self.processes)})
            queues = [*queues, *self.topology.work_queues("timeline")]
        wait_for(lambda: all(consumers(q) >= 1 for q in queues), 60,
                 "the workers to consume every partition", interval=0.05)

    def stop_workers(self) -> None:
        self.stop("worker")
        self.stop("recorder")

    def worker_pids(self) -> dict[str, int]:
        """The processes that consume: the portal's workers and, when it runs apart, the
        recorder."""
        pids = {"workers": self.procs["worker"].pid}
        if "recorder" in self.procs:
            pids["recorder"] = self.procs["recorder"].pid
        return pids

    def skipped(self) -> int:
        """Events the running workers skipped (``lienthong_skipped_total``, every reason): an
        event that reached its worker after a later one of its dossier."""
        total = 0.0
        for port in range(self.metrics_port, self.metrics_port + self.processes):
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            total += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                         if line.startswith("lienthong_skipped_total"))
        return int(total)

    @property
    def topology(self) -> Any:
        from hub.broker.topology import Topology
        from hub.settings import Settings

        return Topology.from_settings(Settings(name_prefix=self.prefix,
                                               topology_file=self.topology_file))

    @property
    def work_queues(self) -> list[str]:
        """The portal's work queues: its partitions, as the shipped topology file says."""
        return list(self.topology.work_queues("npsp"))

    def backlog_ready(self) -> int:
        return sum(queue_state(q)[0] for q in self.work_queues)

    def tear_down(self, keep_files: bool = False) -> None:
        """Stop the processes, delete the run's queues, exchanges and database, and its
        directory (logs, generated keys) unless ``keep_files``: a failed run's, to read."""
        for name in list(self.procs):
            self.stop(name)
        if not keep_files:
            shutil.rmtree(self.root, ignore_errors=True)
        conn = pika.BlockingConnection(pika.URLParameters(AMQP))
        ch = conn.channel()
        for q in _queues_of(self.prefix):
            with contextlib.suppress(Exception):
                ch.queue_delete(q)
        for x in ("events", "unroutable", "return"):
            with contextlib.suppress(Exception):
                ch.exchange_delete(f"{self.prefix}.{x}")
        conn.close()
        if self.database:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as conn2:
                conn2.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _queues_of(prefix: str) -> list[str]:
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True,
                         text=True).stdout
    return [q for q in out.split() if q.startswith(prefix + ".")]


def queue_state(queue: str) -> tuple[int, int]:
    conn = pika.BlockingConnection(pika.URLParameters(AMQP))
    try:
        method = conn.channel().queue_declare(queue, passive=True).method
        return int(method.message_count), int(method.consumer_count)
    finally:
        conn.close()


def consumers(queue: str) -> int:
    try:
        return queue_state(queue)[1]
    except pika.exceptions.AMQPError:
        return 0


# -- the load -----------------------------------------------------------------------------------


def dossier(code: str) -> dict[str, Any]:
    now = datetime.now(VN_TZ).replace(microsecond=0)
    return {
        "code": code, "procedure_code": "2.002492",
        "procedure_name": "Cấp giấy phép xây dựng nhà ở riêng lẻ", "field_code": "G14",
        "agency_code": AGENCY,
        "applicant": {"identity_number": "001090012345", "name": "Nguyễn Văn An",
                      "birth_date": "1990-01-15", "address": "Số 1 phố Thử Nghiệm"},
        "channel": 1, "status": 1, "submitted_at": now.isoformat(),
        "due_at": (now + timedelta(days=15)).isoformat(),
    }


Request = tuple[str, bytes, dict[str, str], tuple[str, int]]  # path, body, headers, (code, n)


class Province:
    """The province's one-stop system: signed REST calls, each event's 202 time kept."""

    def __init__(self, hub_url: str, api_key: str, signer: Signer, connections: int) -> None:
        # bench.rawhttp rather than httpx: a fraction of the CPU per request (see
        # docs/performance.md#lean-load-generator); it also keeps no more requests in flight
        # than connections, the others waiting their turn.
        self.http = RawClient(hub_url, connections, timeout=60.0)
        self.api_key = api_key
        self.signer = signer
        self.accepted: dict[tuple[str, int], float] = {}  # (code, status) -> time of the 202
        self.refused = 0
        # Requests signed before the measured phase (``prepare``), by dossier.
        self.prepared: dict[str, list[Request]] = {}

    def request(self, path: str, event_type: str, data: dict[str, Any], key: tuple[str, int],
                ) -> Request:
        body = json.dumps(data, ensure_ascii=False).encode()
        request = Envelope(id=str(uuid.uuid4()), source=PROVINCE, type=event_type,
                           subject="-", time=datetime.now(UTC), data=None)
        return path, body, {"Content-Type": "application/json", "X-API-Key": self.api_key,
                            "X-Signature": self.signer.sign(body, request),
                            "Idempotency-Key": request.id}, key

    def requests(self, code: str, events: int) -> list[Request]:
        """A dossier's events: submitted, then its status changes."""
        out = [self.request("/v1/dossiers", "vn.gov.dossier.submitted", dossier(code),
                            (code, 1))]
        for n in range(2, events + 1):
            out.append(self.request(
                f"/v1/dossiers/{code}/status", "vn.gov.dossier.status-changed",
                {"dossier_code": code, "status": STATUSES[n - 1],
                 "at": datetime.now(VN_TZ).isoformat(), "officer": "Lê Thị Bình",
                 "note": "bench"}, (code, n)))
        return out

    def prepare(self, codes: list[str], events: int) -> None:
        """Sign every request now, so the measured phase spends nothing on signing (they must
        be sent within the intake's signature_max_age, 300 s)."""
        for code in codes:
            self.prepared[code] = self.requests(code, events)

    async def post(self, prepared: Request) -> bool:
        path, body, headers, key = prepared
        answer: Answer | None = None
        for _ in range(20):
            try:
                answer = await self.http.post(path, body, headers)
            except TransportError:
                # A kept-alive connection the server closed as the request went out: the
                # Idempotency-Key makes sending it again safe.
                await asyncio.sleep(0.2)
                continue
            if answer.status_code == 202:
                self.accepted[key] = time.time()
                return True
            if answer.status_code not in (429, 503):
                break
            await asyncio.sleep(float(answer.headers.get("Retry-After", "0.2")))
        self.refused += 1
        say(f"  refused {path}: {answer.status_code} {answer.text[:200]}" if answer is not None
            else f"  refused {path}: the connection failed every time")
        return False

    async def one(self, code: str, events: int) -> None:
        for prepared in self.prepared.pop(code, None) or self.requests(code, events):
            if not await self.post(prepared):
                return


async def offer(province: Province, codes: list[str], rate: float, events: int) -> float:
    """Start one dossier every 1/rate seconds (each dossier's events one after another)."""
    t0 = time.perf_counter()
    tasks = []
    for i, code in enumerate(codes):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(province.one(code, events)))
    await asyncio.gather(*tasks)
    return time.perf_counter() - t0


async def flood(province: Province, codes: list[str], events: int, parallel: int) -> float:
    t0 = time.perf_counter()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for code in codes:
        queue.put_nowait(code)

    async def sender() -> None:
        while not queue.empty():
            await province.one(queue.get_nowait(), events)

    await asyncio.gather(*(sender() for _ in range(parallel)))
    return time.perf_counter() - t0


@dataclass
class Load:
    """What the load generator processes did: 202 times, refusals, their own CPU."""

    accepted: dict[tuple[str, int], float]
    refused: int
    seconds: float
    cpu_seconds: float


def _generator(conn: Any, hub_url: str, api_key: str, signer: Signer, codes: list[str],
               events: int, rate: float | None, connections: int, presign: bool) -> None:
    """One load generator process: ``rate`` dossiers a second (``offer``), or as fast as the
    intake takes them with ``connections`` senders (``flood``)."""
    province = Province(hub_url, api_key, signer, connections)
    if presign:
        province.prepare(codes, events)
    start = resource.getrusage(resource.RUSAGE_SELF)

    async def go() -> float:
        work = (offer(province, codes, rate, events) if rate is not None
                else flood(province, codes, events, parallel=connections))
        return float(await _close_after(province, work))

    took = asyncio.run(go())
    end = resource.getrusage(resource.RUSAGE_SELF)
    cpu = end.ru_utime + end.ru_stime - start.ru_utime - start.ru_stime
    conn.send(Load(province.accepted, province.refused, took, cpu))
    conn.close()


def send_load(hub_url: str, api_key: str, signer: Signer, codes: list[str], events: int, *,
             rate: float | None, processes: int, connections: int, presign: bool) -> Load:
    """Send ``codes`` from ``processes`` generator processes (one Python process signing and
    sending takes a core at a few hundred requests a second), each with its share
    of the dossiers, of the rate and of the connections."""
    ctx = multiprocessing.get_context("fork")
    shares = [codes[i::processes] for i in range(processes)]
    running = []
    for share in shares:
        if not share:
            continue
        mine, theirs = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_generator, args=(
            theirs, hub_url, api_key, signer, share, events,
            None if rate is None else rate * len(share) / len(codes),
            max(1, connections // processes), presign))
        proc.start()
        running.append((proc, mine))
    total = Load({}, 0, 0.0, 0.0)
    for proc, mine in running:
        load: Load = mine.recv()
        proc.join()
        total.accepted.update(load.accepted)
        total.refused += load.refused
        total.seconds = max(total.seconds, load.seconds)
        total.cpu_seconds += load.cpu_seconds
    return total


def codes_for(n: int, tag: str) -> list[str]:
    """``n`` dossier codes of their own: a dossier number is a day and that day's counter
    (0001-9999), so runs and phases take days from a random start of their own."""
    start = datetime(2030, 1, 1) + timedelta(days=int(tag, 16) % 20000)
    return [f"{AGENCY}-{start + timedelta(days=i // 9999):%y%m%d}-{i % 9999 + 1:04d}"
            for i in range(n)]


class Deliveries:
    """(code, status) -> first arrival at the portal, read from the simulator's calls as they
    accumulate: each poll asks only for the calls after those read before."""

    def __init__(self, sim_url: str) -> None:
        self.sim_url = sim_url
        self.read = 0
        self.seen: dict[tuple[str, int], float] = {}

    def poll(self) -> dict[tuple[str, int], float]:
        doc = httpx.get(f"{self.sim_url}/_sim/calls", params={"since": self.read},
                        timeout=60).json()
        self.read += len(doc["calls"])
        for call in doc["calls"]:
            if call["service"] != "DongBoHoSoMC":
                continue
            for code, status in zip(call["codes"], call.get("statuses") or [], strict=False):
                self.seen.setdefault((code, STATUSES.index(int(status)) + 1), call["at"])
        return self.seen


def windowed_p99(accepted: dict[tuple[str, int], float], seen: dict[tuple[str, int], float],
                 start: float, window: float = 10.0) -> list[float]:
    """p99 in ms of the 202-to-portal time of the events accepted in each ``window`` seconds."""
    by_window: dict[int, list[float]] = {}
    for key, t in accepted.items():
        if key in seen:
            by_window.setdefault(int((t - start) // window), []).append(seen[key] - t)
    return [round(percentile(by_window[w], 99) * 1000) for w in sorted(by_window)]


def out_of_order(seen: dict[tuple[str, int], float], codes: list[str], events: int) -> int:
    bad = 0
    for code in codes:
        times = [seen.get((code, s)) for s in range(1, events + 1)]
        if None not in times and any(a > b for a, b in itertools.pairwise(times)):
            bad += 1
    return bad


def wait_delivered(sim_url: str, codes: list[str], events: int, timeout: float,
                   ) -> dict[tuple[str, int], float]:
    wanted = {(c, s) for c in codes for s in range(1, events + 1)}
    deadline = time.monotonic() + timeout
    last = -1
    watched = Deliveries(sim_url)
    while True:
        seen = watched.poll()
        have = len(wanted & seen.keys())
        if have == len(wanted) or time.monotonic() > deadline:
            if have < len(wanted):
                say(f"  only {have}/{len(wanted)} events delivered after {timeout:.0f}s")
            return seen
        if have != last:
            say(f"  delivered {have}/{len(wanted)}")
            last = have
        time.sleep(1.0)


# -- the phases ---------------------------------------------------------------------------------


def measure(dep: Deployment, args: argparse.Namespace) -> dict[str, Any]:
    signer, api_key = dep.set_up()
    dep.boot()
    groups = {"intake": [dep.procs["serve"].pid], "simulator": [dep.procs["simulator"].pid],
              "broker": pids_named("beam.smp")}
    if dep.store == "postgresql":
        groups["postgresql (machine-wide)"] = pids_named("postgres")
    result: dict[str, Any] = {"store": dep.store, "processes": dep.processes,
                              "latency_ms": dep.latency_ms, "recorder": dep.recorder}
    dep.start_workers()
    groups.update({name: [pid] for name, pid in dep.worker_pids().items()})
    if "offered" in args.phases:
        result["offered"] = offered_phase(dep, args, signer, api_key, groups)
    if "backlog" in args.phases:
        result["backlog"] = backlog_phase(dep, args, signer, api_key, groups)
    return result


def offered_phase(dep: Deployment, args: argparse.Namespace, signer: Signer, api_key: str,
                  groups: dict[str, list[int]]) -> dict[str, Any]:
    """``--rate`` dossiers a second for ``--seconds``, the workers running, from requests
    signed beforehand by ``--generators`` processes."""
    sim_url = f"http://127.0.0.1:{dep.sim_port}"
    events = args.events
    codes = codes_for(int(args.rate * args.seconds), uuid.uuid4().hex[:6])
    meter = CpuMeter(groups)
    say(f"  offering {args.rate}/s for {args.seconds}s ({len(codes)} dossiers, "
        f"{args.generators} generator processes)")
    load = send_load(dep.hub_url, api_key, signer, codes, events, rate=args.rate,
                    processes=args.generators, connections=args.connections, presign=True)
    sent = time.time()
    seen = wait_delivered(sim_url, codes, events, timeout=args.seconds * 4 + 60)
    cpu = meter.used()
    cpu["load generator"] = load.cpu_seconds
    latencies = [seen[k] - t for k, t in load.accepted.items() if k in seen]
    done = [c for c in codes if all((c, s) in seen for s in range(1, events + 1))]
    last = max((seen[(c, events)] for c in done), default=time.time())
    first_202 = min(load.accepted.values(), default=time.time())
    out = {
        "dossiers": len(codes), "rate_offered": args.rate, "seconds_to_send": load.seconds,
        # What the intake took in: dossiers whose every event had its 202, per second.
        "rate_achieved": len({c for c, n in load.accepted if n == events})
        / max(1e-9, max(load.accepted.values(), default=sent) - first_202),
        "refused": load.refused, "delivered": len(done),
        "dossiers_per_s": len(done) / max(1e-9, last - first_202),
        "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
        # Whether the tail is steady or a moment (start-up, a stall): p99 of each 10 s of 202s.
        "p99_ms_by_10s": windowed_p99(load.accepted, seen, first_202),
        "out_of_order": out_of_order(seen, codes, events),
        "skipped": dep.skipped(),
        "cpu_ms_per_dossier": {k: v * 1000 / max(1, len(done)) for k, v in cpu.items()},
    }
    # What the machine's cores allow at that cost, every process of the run together: an
    # offered rate above it cannot be delivered, whatever the hub's design (the goals measured
    # by this bench are for a machine of 2 cores).
    total = sum(out["cpu_ms_per_dossier"].values())
    out["cpu_ms_per_dossier_all"] = total
    out["cores"] = len(os.sched_getaffinity(0))
    out["cpu_bound_dossiers_per_s"] = out["cores"] * 1000 / total if total else float("nan")
    say(f"  offered: {json.dumps(out)}")
    return out


def backlog_phase(dep: Deployment, args: argparse.Namespace, signer: Signer, api_key: str,
                  groups: dict[str, list[int]]) -> dict[str, Any]:
    """``--backlog`` dossiers taken in with the workers stopped, then drained."""
    sim_url = f"http://127.0.0.1:{dep.sim_port}"
    events = args.events
    dep.stop_workers()
    backlog = codes_for(args.backlog, uuid.uuid4().hex[:6])
    say(f"  taking in a backlog of {len(backlog)} dossiers (workers stopped)")
    intake_meter = CpuMeter({"intake": groups["intake"]})
    # Signed as sent: a backlog this large takes longer than a signature's 300 s of validity.
    load = send_load(dep.hub_url, api_key, signer, backlog, events, rate=None,
                    processes=args.generators, connections=args.connections, presign=False)
    wait_for(lambda: dep.backlog_ready() >= len(backlog) * events - load.refused, 600,
             "the outbox to reach the work queues", interval=0.5)
    intake_cpu = intake_meter.used()["intake"]
    meter = CpuMeter({k: v for k, v in groups.items() if k not in ("workers", "recorder")})
    t_start = time.time()
    dep.start_workers()
    pids = dep.worker_pids()
    # From the moment they consume: their start-up (imports, keys, connections) is not the
    # cost of a delivery.
    started = {name: cpu_seconds(pid) for name, pid in pids.items()}
    seen = wait_delivered(sim_url, backlog, events, timeout=args.backlog / 20 + 120)
    cpu = meter.used()
    cpu.update({name: cpu_seconds(pid) - started[name] for name, pid in pids.items()})
    done = [c for c in backlog if all((c, s) in seen for s in range(1, events + 1))]
    times = [seen[(c, s)] for c in done for s in range(1, events + 1)]
    span = (max(times) - min(times)) if times else float("nan")
    out = {
        "dossiers": len(backlog), "intake_seconds": load.seconds,
        "intake_dossiers_per_s": len(backlog) / max(1e-9, load.seconds),
        "load_generator_cpu_ms_per_dossier": load.cpu_seconds * 1000 / max(1, len(backlog)),
        # The intake's CPU while it took the backlog in (and relayed it to the work queues).
        "intake_cpu_ms_per_dossier": intake_cpu * 1000 / max(1, len(backlog)),
        "refused": load.refused, "delivered": len(done),
        "drain_dossiers_per_s": len(done) / span if span else float("nan"),
        "drain_from_start_per_s": len(done) / max(1e-9, max(times, default=t_start) - t_start),
        "out_of_order": out_of_order(seen, backlog, events),
        "skipped": dep.skipped(),
        "cpu_ms_per_dossier": {k: v * 1000 / max(1, len(done)) for k, v in cpu.items()},
    }
    say(f"  backlog: {json.dumps(out)}")
    return out


async def _close_after(province: Province, work: Any) -> Any:
    try:
        return await work
    finally:
        await province.http.aclose()


def bare_relay_baseline(messages: int) -> float:
    """The bare pika relay of bench/relay.py, in this run: the machine's ceiling."""
    sys.path.insert(0, str(ROOT))
    from bench import relay
    from hub.settings import Settings

    data = Path(tempfile.mkdtemp(prefix="lt-e2e-relay-"))
    relay.make_keys(data)
    sig = relay.signer(data, relay.SOURCE)
    src, dst = f"e2e-bare-src-{uuid.uuid4().hex[:6]}", f"e2e-bare-dst-{uuid.uuid4().hex[:6]}"
    relay.declare(AMQP, src, dst)
    try:
        batch = [relay.message(sig, 2000, i) for i in range(messages)]
        asyncio.run(relay.fill(Settings(amqp_url=AMQP), src, batch))
        return relay.timed_relay("bare", AMQP, data, src, dst, messages)
    finally:
        relay.delete(AMQP, src, dst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", default="0,50,200",
                        help="destination latencies in ms, comma-separated")
    parser.add_argument("--processes", default="1,2", help="worker process counts")
    parser.add_argument("--recorder", default="inside",
                        help="where the timeline recorder runs: inside (each worker process), "
                        "own (a process of its own), none (disabled in the topology: no "
                        "recorder, no timeline queue), comma-separated")
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--rate", type=float, default=300.0, help="dossiers/s offered")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long it is offered")
    parser.add_argument("--backlog", type=int, default=10000, help="dossiers in the backlog")
    parser.add_argument("--events", type=int, default=2, choices=range(1, len(STATUSES) + 1),
                        help="events per dossier (submitted, then status changes)")
    parser.add_argument("--phases", default="offered,backlog",
                        help="which phases to run: offered, backlog or both")
    parser.add_argument("--serve-workers", type=int, default=2,
                        help="intake processes (lienthong serve --workers)")
    parser.add_argument("--generators", type=int, default=2,
                        help="load generator processes")
    parser.add_argument("--connections", type=int, default=64,
                        help="connections to the intake, over all generator processes")
    parser.add_argument("--baseline-messages", type=int, default=20000,
                        help="messages of the bare relay baseline (0: none, for repeated runs "
                        "that measure CPU per dossier)")
    parser.add_argument("--quick", action="store_true",
                        help="200 ms, 1 process, SQLite, 100/s for 10 s, a backlog of 1,000")
    args = parser.parse_args()
    unknown = set(args.recorder.split(",")) - {"inside", "own", "none"}
    if unknown:
        parser.error(f"--recorder {','.join(sorted(unknown))}: not a place for the recorder; "
                     "give inside, own or none, comma-separated")
    if args.quick:
        args.latency, args.processes, args.stores = "200", "1", "sqlite"
        args.rate, args.seconds, args.backlog = 100.0, 10.0, 1000
    bare = float("nan")
    if args.baseline_messages:
        say("bare relay baseline (bench/relay.py's bare pika relay, this run)")
        bare = bare_relay_baseline(args.baseline_messages)
        say(f"  bare relay: {bare:,.0f} msg/s")
    runs = []
    for store in args.stores.split(","):
        for processes, recorder, latency in itertools.product(
                (int(p) for p in args.processes.split(",")), args.recorder.split(","),
                (int(ms) for ms in args.latency.split(","))):
            say(f"== {store}, {processes} worker process(es), recorder {recorder}, "
                f"destination latency {latency} ms")
            dep = Deployment(store, processes, latency, args.serve_workers, recorder)
            try:
                runs.append(measure(dep, args))
            except BaseException:
                say(f"  the processes' logs and data are kept in {dep.root}")
                dep.tear_down(keep_files=True)
                raise
            dep.tear_down()
    report = {"when": datetime.now(UTC).isoformat(), "bare_relay_msgs_per_s": bare,
              "args": vars(args), "runs": runs}
    nan = float("nan")
    print(f"\n{'store':<11}{'proc':>5}{'recorder':>9}{'lat ms':>7}{'offered/s':>10}{'taken/s':>8}"
          f"{'deliv/s':>8}{'cap/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'drain/s':>8}{'order':>6}"
          f"{'skip':>5}"
          "  CPU ms/dossier in the drain: workers, recorder, intake, broker, simulator")
    for r in runs:
        o, b = r.get("offered", {}), r.get("backlog", {})
        cpu = b.get("cpu_ms_per_dossier", {})
        print(f"{r['store']:<11}{r['processes']:>5}{r['recorder']:>9}{r['latency_ms']:>7}"
              f"{o.get('rate_offered', nan):>10.0f}{o.get('rate_achieved', nan):>8.0f}"
              f"{o.get('dossiers_per_s', nan):>8.0f}{o.get('cpu_bound_dossiers_per_s', nan):>7.0f}"
              f"{o.get('p50_ms', nan):>8.0f}"
              f"{o.get('p99_ms', nan):>8.0f}{b.get('drain_dossiers_per_s', nan):>8.0f}"
              f"{o.get('out_of_order', 0) + b.get('out_of_order', 0):>6}"
              f"{o.get('skipped', 0) + b.get('skipped', 0):>5}  "
              + ", ".join(f"{cpu.get(k, nan):.2f}"
                          for k in ("workers", "recorder", "intake", "broker", "simulator")))
    print("cap/s: the dossiers a second the machine's cores allow at the offered phase's CPU "
          "per dossier, every process together (telling near saturation only: at a low rate "
          "idle loops and smaller batches make each dossier dearer)")
    print(f"bare relay of this run: {bare:,.0f} msg/s")
    out = ROOT / "bench" / "results" / f"e2e-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
