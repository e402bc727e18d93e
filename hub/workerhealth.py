"""Health, readiness and metrics of a worker process (``lienthong worker``), over HTTP like the
server's: ``/healthz`` (the process answers), ``/readyz`` (every consumer is registered with
the broker, and the store answers and takes a write: ``hub.store.health.probe``, the server's
probe too) and ``/metrics`` (Prometheus text: the retry and dead-letter counters of
``hub.broker.metrics`` and each consumer's counts).

The endpoint is a few lines of asyncio rather than an ASGI server: it runs in the worker's own
event loop, beside the consumers, and must not take over the process's signal handling (the
worker stops cleanly on SIGINT/SIGTERM, ``hub.runtime.run_until_signalled``). It answers GET
and HEAD, one request per connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hub.broker.metrics import REGISTRY
from hub.errors import ConfigError
from hub.store import Store
from hub.store.health import probe

log = logging.getLogger(__name__)

MAX_REQUEST_HEAD = 8192
REQUEST_TIMEOUT = 5.0
OUTCOMES = ("received", "handled", "duplicates", "retried", "held", "dead", "invalid",
            "abandoned")


class ConsumerLike(Protocol):
    """What the endpoint reads of ``hub.broker.consumer.Consumer``."""

    @property
    def name(self) -> str: ...
    @property
    def consuming(self) -> asyncio.Event: ...
    @property
    def stats(self) -> object: ...


class _ConsumerStats(Collector):
    def __init__(self, consumers: Sequence[ConsumerLike]) -> None:
        self._consumers = consumers

    def collect(self) -> Iterator[Metric]:
        messages = CounterMetricFamily(
            "lienthong_worker_messages",
            "Deliveries of a consumer by outcome (received; handled and confirmed; duplicates "
            "absorbed; copied to a retry tier; sent behind an earlier message of their dossier "
            "held in a retry tier; parked dead or invalid; abandoned on a lost connection, to "
            "be redelivered)", labels=["consumer", "outcome"])
        reconnects = CounterMetricFamily(
            "lienthong_worker_reconnects", "Connections to the broker a consumer lost",
            labels=["consumer"])
        connected = GaugeMetricFamily(
            "lienthong_worker_consuming",
            "1 while the consumer is registered with the broker", labels=["consumer"])
        for c in self._consumers:
            for outcome in OUTCOMES:
                messages.add_metric([c.name, outcome], float(getattr(c.stats, outcome, 0)))
            reconnects.add_metric([c.name], float(getattr(c.stats, "reconnects", 0)))
            connected.add_metric([c.name], 1.0 if c.consuming.is_set() else 0.0)
        yield messages
        yield reconnects
        yield connected


class WorkerHealth:
    """The endpoint's answers for the consumers of one process and its store."""

    def __init__(self, consumers: Sequence[ConsumerLike], store: Store, *,
                 probe_timeout: float = 5.0) -> None:
        self.consumers = list(consumers)
        self.store = store
        self.probe_timeout = probe_timeout
        self._registry = CollectorRegistry()
        self._registry.register(_ConsumerStats(self.consumers))
        self._probe: asyncio.Task[str] | None = None

    async def readiness(self) -> tuple[bool, dict[str, object]]:
        waiting = [c.name for c in self.consumers if not c.consuming.is_set()]
        broker = "ok" if not waiting else "not connected: " + ", ".join(waiting)
        checks = {"store": await self._store_check(), "broker": broker}
        ready = all(v == "ok" for v in checks.values())
        return ready, {"status": "ready" if ready else "not ready", "checks": checks}

    async def _store_check(self) -> str:
        # One probe at a time: a store that hangs must not collect a thread per scrape.
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(asyncio.to_thread(probe, self.store.engine))
        try:
            return await asyncio.wait_for(asyncio.shield(self._probe), self.probe_timeout)
        except TimeoutError:
            return f"not writable: no answer within {self.probe_timeout}s"

    def metrics(self) -> bytes:
        return generate_latest(REGISTRY) + generate_latest(self._registry)

    async def answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        if path == "/healthz":
            return 200, "application/json", b'{"status":"ok"}'
        if path == "/readyz":
            ready, body = await self.readiness()
            return 200 if ready else 503, "application/json", json.dumps(body).encode()
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, await asyncio.to_thread(self.metrics)
        return 404, "application/json", json.dumps({
            "code": "client.not_found",
            "message": f"no {path!r} here; a worker answers /healthz, /readyz and /metrics"},
        ).encode()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                    ConnectionError):
                return
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                await _respond(writer, 400, "application/json",
                               b'{"code":"client.bad_request","message":"not an HTTP request"}')
                return
            method, target = parts[0], parts[1]
            if method not in ("GET", "HEAD"):
                await _respond(writer, 405, "application/json", json.dumps({
                    "code": "client.method_not_allowed",
                    "message": f"{method} is not allowed; use GET"}).encode(),
                    extra="Allow: GET, HEAD\r\n")
                return
            status, content_type, body = await self.answer(method, target.split("?", 1)[0])
            await _respond(writer, status, content_type, body, head_only=method == "HEAD")
        except ConnectionError:
            pass
        finally:
            writer.close()


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            503: "Service Unavailable"}


async def _respond(writer: asyncio.StreamWriter, status: int, content_type: str, body: bytes,
                   *, head_only: bool = False, extra: str = "") -> None:
    writer.write(
        f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n{extra}"
        "Connection: close\r\n\r\n".encode("latin-1") + (b"" if head_only else body))
    await writer.drain()


@asynccontextmanager
async def serving(health: WorkerHealth, host: str, port: int) -> AsyncIterator[int]:
    """Answer on ``host:port`` (0: a free port) while the block runs; yields the port."""
    try:
        server = await asyncio.start_server(health.handle, host, port, limit=MAX_REQUEST_HEAD)
    except OSError as exc:
        raise ConfigError(
            f"the worker's health and metrics endpoint cannot listen on {host}:{port} "
            f"({exc.strerror or exc}); set LIENTHONG_WORKER_METRICS_PORT to a free port (with "
            "--processes N, ports port..port+N-1 must be free) or to 0 for no endpoint",
            field="worker_metrics_port",
        ) from None
    bound = int(server.sockets[0].getsockname()[1])
    log.info("health and metrics on http://%s:%d (/healthz, /readyz, /metrics)", host, bound)
    try:
        yield bound
    finally:
        server.close()
        await server.wait_closed()
