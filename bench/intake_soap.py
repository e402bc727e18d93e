"""SOAP intake benchmark: signed SubmitDossier requests (about 5 KB, four attachments by
reference) POSTed to /soap/v1 of the hub's app under uvicorn, end to end: authenticate, parse
(hardened), validate (XSD), verify the XML-DSig, keep in the store (outbox, log, timeline, one
transaction), answer with a signed response. Every request is distinct (its own dossier, its
own signature), so every one is a real write; at the end the outbox must hold them all.

Each request carries its signing time (``createdAt``), and the hub refuses one signed longer
ago than ``signature_max_age`` (300 s by default). Requests are signed shortly before they
are sent, all of them before the load starts (about a millisecond each, across the CPUs; in
bench/intake.py as well, for its whole --duration), so a run must send its last request within
that window of its first signature: the defaults here take well under a minute, and
``seconds_since_signing`` in the figures says how close a run came.

The load comes from raw HTTP/1.1 keep-alive connections in this process (prepared bytes, a
fixed number in flight), so the figure is the server's, not a SOAP client's. Prints requests/s
and latency percentiles and writes JSON. The outbox relay is off here (publishing is measured
by bench/intake.py, see below); ``--intake null`` keeps nothing, to measure the SOAP layer
alone.

    .venv/bin/python bench/intake_soap.py [--requests 4000] [--concurrency 32] [--workers 2]
        [--store sqlite|postgresql] [--pg postgresql://postgres@127.0.0.1:5432/test]
        [--soap-version 1.1|1.2] [--intake hub|null] [--json bench/results/intake_soap.json]

``soap(...)`` runs it from Python and returns the figures. ``soap_target(ctx)`` is the SOAP
target of bench/intake.py (its ``Target`` protocol: the same server command style, load
generator and report as the REST intake): add it there with
``from bench.intake_soap import soap_target; TARGETS.append(soap_target)``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from hub.api.auth import sha256_hex
from hub.signing import TrustStore, generate
from hub.signing.keys import KeyFiles, load_certificate, load_private_key

HUB = "VN:GOV:000.00.00.G22:lienthong"
CLIENT = "VN:GOV:000.00.00.H56:igate"
API_KEY = "bench-soap-api-key"
FACTORY = "bench.intake_soap:app_from_env"
_SOAP = {
    "1.1": ("http://schemas.xmlsoap.org/soap/envelope/", "text/xml; charset=utf-8"),
    "1.2": ("http://www.w3.org/2003/05/soap-envelope", "application/soap+xml; charset=utf-8"),
}
_ACTION = "urn:lienthong:hub:v1:SubmitDossier"

_DOSSIER = (
    '<lt:SubmitDossier xmlns:lt="urn:lienthong:hub:v1"><lt:createdAt>{created}</lt:createdAt>'
    "<lt:dossier>"
    "<lt:code>000.00.00.H56-{day}-{n:04d}</lt:code><lt:procedureCode>2.002492</lt:procedureCode>"
    "<lt:procedureName>Cấp giấy phép xây dựng nhà ở riêng lẻ</lt:procedureName>"
    "<lt:fieldCode>XD</lt:fieldCode><lt:fieldName>Xây dựng</lt:fieldName>"
    "<lt:agencyCode>000.00.00.H56</lt:agencyCode><lt:applicant>"
    "<lt:identityNumber>038090001234</lt:identityNumber><lt:name>Nguyễn Văn An</lt:name>"
    "<lt:birthDate>1990-05-01</lt:birthDate>"
    "<lt:address>Số 1 Đường Lê Lợi, Phường Điện Biên, Thanh Hóa</lt:address>"
    "<lt:phone>0912345678</lt:phone><lt:email>an@example.vn</lt:email></lt:applicant>"
    "<lt:channel>2</lt:channel><lt:submittedAt>2025-01-01T08:00:00</lt:submittedAt>"
    "<lt:receivedAt>2025-01-01T08:05:00</lt:receivedAt><lt:dueAt>2025-01-15T17:00:00</lt:dueAt>"
    "<lt:handlingUnit>Bộ phận một cửa</lt:handlingUnit><lt:attachments>{attachments}"
    "</lt:attachments><lt:fees><lt:fee><lt:code>LP1</lt:code><lt:name>Lệ phí cấp phép</lt:name>"
    "<lt:amount>75000</lt:amount><lt:kind>2</lt:kind></lt:fee></lt:fees></lt:dossier>"
    "</lt:SubmitDossier>"
)
_ATTACHMENTS = "".join(
    f"<lt:attachment><lt:id>a{i}</lt:id><lt:name>tai-lieu-{i}.pdf</lt:name>"
    f"<lt:url>https://files.example.vn/dossiers/a{i}</lt:url><lt:size>{1000 + i}</lt:size>"
    f"<lt:sha256>{'ab' * 32}</lt:sha256><lt:componentCode>TP{i}</lt:componentCode>"
    "<lt:digitized>true</lt:digitized></lt:attachment>"
    for i in range(4)
)


# -- the server side (one uvicorn worker process) --------------------------------------------


class NullIntake:
    """Validates like the intake, keeps nothing: measures the SOAP layer alone."""

    def accept(self, client: Any, event_type: str, data: dict[str, Any], *,
               idempotency_key: str | None, upstream_proof: str | None) -> Any:
        import uuid

        from hub.intake.jobs import Accepted
        from hub.model import parse_event_data

        parse_event_data(event_type, data)
        return Accepted(str(uuid.uuid4()), duplicate=False)


def app_from_env() -> Any:
    """The hub's app with the SOAP routes, from the environment (uvicorn factory)."""
    from hub.api import soap
    from hub.api.app import create_app
    from hub.settings import Settings

    settings = Settings()
    null = os.environ.get("BENCH_SOAP_INTAKE") == "null"
    # The outbox relay publishes to the broker when the benchmark declared the exchange.
    app = create_app(settings, relay=os.environ.get("BENCH_SOAP_RELAY") == "1",
                     soap=not null)
    if null:
        ctx = app.state.hub
        app.include_router(soap.router(settings, NullIntake(), ctx.registry,
                                       limiter=ctx.limiter))
    return app


# -- preparing ----------------------------------------------------------------------------


def prepare(data_dir: Path) -> None:
    """Keys (the hub's JWS key, its SOAP key, the client's key), trust store, clients file."""
    keys = data_dir / "keys"
    generate(HUB, "ES256").save(keys)
    generate(HUB + "-soap", "RS256").save(keys)
    client = generate(CLIENT, "RS256")
    client.save(keys)
    TrustStore(data_dir / "trust").add(client.certificate_pem())
    (data_dir / "clients.toml").write_text(
        "[[clients]]\n"
        f'system_id = "{CLIENT}"\nname = "bench"\n'
        'allowed_types = ["vn.gov.dossier.*"]\nallowed_agencies = ["000.00.00.H56"]\n'
        f'api_key_sha256 = ["{sha256_hex(API_KEY)}"]\n'
    )


def _sign_batch(args: tuple[str, str, list[int]]) -> list[bytes]:
    from hub.api.soap.dsig import sign_element

    keys_dir, version, numbers = args
    files = KeyFiles.of(Path(keys_dir), CLIENT)
    key = load_private_key(files.key)
    cert = load_certificate(files.certificate)
    ns = _SOAP[version][0].encode()
    out = []
    for n in numbers:
        # A day per 9999 dossiers keeps every dossier code distinct.
        day = f"25{1 + n // 9999 // 28:02d}{1 + n // 9999 % 28:02d}"
        # Signed now: the hub accepts it for signature_max_age from this time.
        created = datetime.now(UTC).isoformat(timespec="milliseconds")
        element = etree.fromstring(_DOSSIER.format(
            day=day, n=1 + n % 9999, attachments=_ATTACHMENTS, created=created).encode())
        signed = sign_element(element, key, cert, element_id="request")
        out.append(b'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="' + ns
                   + b'"><soap:Body>' + etree.tostring(signed) + b"</soap:Body></soap:Envelope>")
    return out


def signed_requests(data_dir: Path, count: int, version: str) -> list[bytes]:
    numbers = list(range(count))
    chunks = [numbers[i::8] for i in range(8)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        parts = list(pool.map(_sign_batch, [(str(data_dir / "keys"), version, c) for c in chunks]))
    return [b for part in parts for b in part]


def http_request(host: str, port: int, body: bytes, version: str) -> bytes:
    head = f"POST /soap/v1 HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in soap_headers(version).items())
    return head.encode() + b"\r\n" + body


def soap_headers(version: str = "1.1") -> dict[str, str]:
    content_type = _SOAP[version][1]
    headers = {"X-API-Key": API_KEY}
    if version == "1.2":
        headers["Content-Type"] = f'{content_type}; action="{_ACTION}"'
    else:
        headers["Content-Type"] = content_type
        headers["SOAPAction"] = f'"{_ACTION}"'
    return headers


class _Presigned:
    """Signed requests made on demand, a chunk at a time across all CPUs (an RSA signature and
    its XML work cost about a millisecond each)."""

    CHUNK = 4096

    def __init__(self, data_dir: Path, version: str) -> None:
        self.data_dir = data_dir
        self.version = version
        self.done: dict[int, bytes] = {}

    def __call__(self, i: int) -> tuple[bytes, dict[str, str]]:
        if i not in self.done:
            start = i - i % self.CHUNK
            numbers = list(range(start, start + self.CHUNK))
            chunks = [numbers[k::8] for k in range(8)]
            with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
                for part, bodies in zip(chunks, pool.map(_sign_batch, [
                        (str(self.data_dir / "keys"), self.version, c) for c in chunks]),
                        strict=True):
                    self.done.update(zip(part, bodies, strict=True))
        return self.done.pop(i), soap_headers(self.version)


def soap_target(ctx: Any) -> Any:
    """The SOAP intake as a target of bench/intake.py: the hub's app (``app_from_env``: the
    REST app with the SOAP routes, outbox relay on) under uvicorn, N workers, SQLite store in
    the work directory, signed SubmitDossier requests."""
    from bench.intake import Target

    data_dir = ctx.workdir / "soap"
    prepare(data_dir)
    env = {
        "LIENTHONG_DATA_DIR": str(data_dir),
        "LIENTHONG_HUB_ID": HUB,
        "LIENTHONG_AMQP_URL": ctx.amqp_url,
        "LIENTHONG_NAME_PREFIX": ctx.prefix,
        "LIENTHONG_CLIENTS_FILE": str(data_dir / "clients.toml"),
        "LIENTHONG_RATE_PER_CLIENT": "1e12",
        "BENCH_SOAP_RELAY": "1",
    }
    command = [sys.executable, "-m", "uvicorn", FACTORY, "--factory", "--host", "127.0.0.1",
               "--workers", str(ctx.workers), "--log-level", "warning", "--no-access-log"]
    # Signing the requests beforehand takes about a millisecond each: make what can be sent.
    return Target("soap", command, env, "/soap/v1", "/soap/v1?wsdl",
                  _Presigned(data_dir, "1.1"), expected_rps=1500)


# -- load -----------------------------------------------------------------------------------


async def _connection(host: str, port: int, queue: asyncio.Queue[bytes],
                      latencies: list[float], statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            try:
                request = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            status = int(status_line.split()[1])
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def _load(host: str, port: int, requests: list[bytes],
                concurrency: int) -> tuple[float, list[float], dict[int, int]]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    await asyncio.gather(*(_connection(host, port, queue, latencies, statuses)
                           for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, statuses


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5) as s:
                s.sendall(f"GET /soap/v1?wsdl HTTP/1.1\r\nHost: {host}\r\n"
                          "Connection: close\r\n\r\n".encode())
                if s.recv(12).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server did not answer within {timeout} s")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def soap(*, requests: int = 4000, concurrency: int = 32, workers: int = 2,
         store: str = "sqlite", pg: str = "postgresql://postgres@127.0.0.1:5432/test",
         version: str = "1.1", warmup: int = 300, intake: str = "hub") -> dict[str, Any]:
    """Run the benchmark; the figures as a dict. ``intake="null"`` keeps nothing (the SOAP
    layer alone: parse, validate, verify, map, validate the model, sign the answer)."""
    from sqlalchemy import func, select

    from hub.store import Store
    from hub.store.tables import outbox
    from hub.testing.store import scratch_url

    host = "127.0.0.1"
    with ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-soap-")))
        url = (f"sqlite:///{data_dir / 'hub.db'}" if store == "sqlite"
               else stack.enter_context(scratch_url(pg, data_dir)))
        prepare(data_dir)
        Store.open(url).close()  # migrate once, before the workers start
        signing_started = time.time()
        bodies = signed_requests(data_dir, warmup + requests, version)
        port = _free_port()
        env = {
            **os.environ,
            "LIENTHONG_DATA_DIR": str(data_dir),
            "LIENTHONG_STORE_URL": url,
            "LIENTHONG_HUB_ID": HUB,
            "LIENTHONG_CLIENTS_FILE": str(data_dir / "clients.toml"),
            "LIENTHONG_RATE_PER_CLIENT": "1000000",
            "BENCH_SOAP_INTAKE": intake,
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", FACTORY, "--factory", "--host", host,
             "--port", str(port), "--workers", str(workers), "--log-level", "warning",
             "--no-access-log"],
            env=env, cwd=Path(__file__).resolve().parent.parent)
        stack.callback(lambda: (server.terminate(), server.wait(timeout=30)))
        _wait_ready(host, port, server, timeout=60)
        wire = [http_request(host, port, b, version) for b in bodies]
        asyncio.run(_load(host, port, wire[:warmup], concurrency))
        elapsed, latencies, statuses = asyncio.run(
            _load(host, port, wire[warmup:], concurrency))
        since_signing = time.time() - signing_started
        db = Store.open(url, migrate_schema=False)
        try:
            with db.engine.connect() as conn:
                kept = conn.execute(select(func.count()).select_from(outbox)).scalar_one()
        finally:
            db.close()
    return {
        "benchmark": "intake_soap",
        "intake": intake,
        "soap_version": version,
        "store": store,
        "workers": workers,
        "concurrency": concurrency,
        "requests": requests,
        "request_bytes": len(bodies[0]),
        "seconds": round(elapsed, 3),
        "requests_per_second": round(requests / elapsed, 1),
        "latency_ms": {
            "p50": round(_pct(latencies, 0.50), 2),
            "p90": round(_pct(latencies, 0.90), 2),
            "p99": round(_pct(latencies, 0.99), 2),
            "mean": round(statistics.fmean(latencies) * 1000, 2),
        },
        "statuses": statuses,
        # From the first signature to the last answer: past signature_max_age (300 s), the
        # last requests were refused as stale (client.stale_message).
        "seconds_since_signing": round(since_signing, 1),
        "outbox_rows": kept,
        "all_kept": statuses == {200: requests} and (
            kept == requests + warmup if intake == "hub" else kept == 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", choices=("postgresql", "sqlite"), default="sqlite")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--soap-version", choices=("1.1", "1.2"), default="1.1")
    parser.add_argument("--intake", choices=("hub", "null"), default="hub",
                        help="null: keep nothing, to measure the SOAP layer alone")
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent
                        / "results" / "intake_soap.json")
    args = parser.parse_args()
    figures = soap(requests=args.requests, concurrency=args.concurrency, workers=args.workers,
                   store=args.store, pg=args.pg, version=args.soap_version,
                   intake=args.intake)
    print(json.dumps(figures, indent=2))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if not figures["all_kept"]:
        hint = (" (the run outlasted the 300 s for which a signed request is accepted: send "
                "fewer --requests)" if figures["seconds_since_signing"] > 300 else "")
        sys.exit("not every request was answered 200 and kept: see statuses and outbox_rows"
                 + hint)


if __name__ == "__main__":
    main()
