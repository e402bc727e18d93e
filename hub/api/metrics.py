"""Prometheus metrics of the entry points: requests by route and status, intake latency, outbox
depth, refusals. Each app has its own registry, so several apps (tests) never collide. Under
several worker processes (``PROMETHEUS_MULTIPROC_DIR`` set, as ``lienthong serve --workers N``
does), counters and histograms are shared through files and ``/metrics`` aggregates them.

Refusals: whatever renders a refusal (the problem handlers of REST, the SOAP fault) notes it
with ``note_refusal(error)``; once the answer is sent, ``RequestMetrics`` counts it in
``lienthong_refused_total{door, code}`` and logs it with the caller's address
(``hub.api.auth.request_address``: the connection's peer, or the client a trusted proxy
forwards). A door is the route's template, or what the route names itself with ``note_door``
(``callback:<system>``). The log line has the code and field, never the message: messages
may quote what was sent, and citizens' data never goes to the log in clear.

Refusals of the connection's protocol (``hub.api.protocol``: headers too large or too slow,
bytes that are not HTTP), made before the app sees a request, are counted under the door
``connection`` by ``Metrics.connection_refused``, which the app offers the protocol as
``app.state.connection_refused``. Connections it closes with no one to answer (nothing sent
within the header deadline, a body still trickling after an early answer) are counted in
``lienthong_connections_closed_total{reason}`` by ``Metrics.connection_closed``
(``app.state.connection_closed``)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.auth import current_peer
from hub.api.errors import Busy
from hub.errors import HubError, SecretMissing

log = logging.getLogger(__name__)

# The door of refusals made before a request reaches a route: the request may have no path yet.
CONNECTION_DOOR = "connection"
# The route label of a request whose path no route takes.
UNMATCHED = "unmatched"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class _OutboxDepth(Collector):
    """Read at scrape time: the number of accepted messages not yet published."""

    def __init__(self, depth: Callable[[], int | None]) -> None:
        self._depth = depth

    def collect(self) -> Iterator[Metric]:
        value = self._depth()
        if value is not None:
            yield GaugeMetricFamily("lienthong_outbox_depth",
                                    "Accepted messages not yet published to the broker",
                                    value=value)


class Metrics:
    def __init__(self, outbox_depth: Callable[[], int | None] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "lienthong_http_requests", "HTTP requests by route template, method and status",
            ["route", "method", "status"], registry=self.registry)
        self.request_seconds = Histogram(
            "lienthong_http_request_seconds", "HTTP request duration by route template",
            ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.intake_seconds = Histogram(
            "lienthong_intake_seconds",
            "Time to accept one message: authenticate, verify, validate, keep in the outbox",
            ["type"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.published = Counter(
            "lienthong_outbox_published", "Messages the outbox relay published with a confirm",
            registry=self.registry)
        self.publish_failures = Counter(
            "lienthong_outbox_publish_failures", "Publish attempts of the relay that failed",
            registry=self.registry)
        self.held_back = Counter(
            "lienthong_outbox_held_back",
            "Rows a relay held back for a moment: an earlier row of their dossier, kept by "
            "another process, was not published yet (hub.outbox.relay)",
            registry=self.registry)
        self.intake_stage_seconds = Histogram(
            "lienthong_intake_stage_seconds",
            "Stages of the intake: check (a request's signature, body and authorisation, on "
            "the event loop), write and commit (a group-commit batch's transaction, once per "
            "batch)", ["stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.relay_stage_seconds = Histogram(
            "lienthong_relay_stage_seconds",
            "Stages of one batch of the outbox relay: claim (rows read or leased), publish "
            "(sent to the broker), confirm (waiting for its confirms), mark (rows marked "
            "published)", ["stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        # Children looked up once: observed on every request and every batch.
        self._intake_stage = {stage: self.intake_stage_seconds.labels(stage)
                              for stage in ("check", "write", "commit")}
        self._relay_stage = {stage: self.relay_stage_seconds.labels(stage)
                             for stage in ("claim", "publish", "confirm", "mark")}
        self.refused = Counter(
            "lienthong_refused",
            "Requests refused at a door (route, or callback:<system>) by the hub's error code: "
            "unauthenticated, access denied, closed for want of a secret, invalid...",
            ["door", "code"], registry=self.registry)
        self.connections_closed = Counter(
            "lienthong_connections_closed",
            "Connections the server closed without an answer, by reason: header_timeout "
            "(nothing of a request arrived within Settings.header_timeout), body_timeout (the "
            "rest of a body answered early did not arrive within Settings.request_timeout)",
            ["reason"], registry=self.registry)
        self._depth = _OutboxDepth(outbox_depth) if outbox_depth is not None else None

    def connection_refused(self, error: HubError, address: str | None) -> None:
        """Count and log a refusal of the connection's protocol (no app, no route saw it)."""
        self.refused.labels(CONNECTION_DOOR, error.code).inc()
        log_refusal(error.http_status, error.code, CONNECTION_DOOR, address, error.field)

    def connection_closed(self, reason: str) -> None:
        """Count a connection the protocol closed without an answer (it logs the closing)."""
        self.connections_closed.labels(reason).inc()

    def intake_stage(self, stage: str, seconds: float) -> None:
        self._intake_stage[stage].observe(seconds)

    def relay_stage(self, stage: str, seconds: float) -> None:
        self._relay_stage[stage].observe(seconds)

    def render(self) -> tuple[bytes, str]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = self.registry
        out = generate_latest(registry)
        if self._depth is not None:
            extra = CollectorRegistry()
            extra.register(self._depth)
            out += generate_latest(extra)
        return out, CONTENT_TYPE_LATEST


class _Refusal:
    """What the request being handled was refused with, noted where the refusal is rendered."""

    __slots__ = ("address", "code", "door", "field", "http_status")

    def __init__(self) -> None:
        self.door: str | None = None
        self.code: str | None = None
        self.field: str | None = None
        self.http_status = 0
        self.address: str | None = None


_refusal: ContextVar[_Refusal | None] = ContextVar("lienthong_refusal", default=None)


def note_refusal(error: HubError) -> None:
    """Note that the request being handled is refused with ``error`` (no effect outside a
    request of an app with ``RequestMetrics``). A failure of the hub itself (a 5xx other than
    a door kept shut for want of its secret, or a process at its cap of requests in flight) is
    no refusal and is not counted as one."""
    noted = _refusal.get()
    if noted is None or (error.http_status >= 500
                         and not isinstance(error, SecretMissing | Busy)):
        return
    noted.code, noted.field, noted.http_status = error.code, error.field, error.http_status
    # Read here, inside the app, where the request's peer is known (RequestPeer runs inside).
    noted.address = current_peer().address


def note_door(door: str) -> None:
    """Name the door of the request being handled more finely than its route template. Only
    with a bounded set of values (a known adapter's name, never what the caller wrote)."""
    noted = _refusal.get()
    if noted is not None:
        noted.door = door


class RequestMetrics:
    """Counts every request under its route template (``/v1/dossiers/{code}/status``, never the
    concrete path, so the label set stays bounded), and every refusal (see ``note_refusal``)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        noted = _Refusal()
        token = _refusal.set(noted)
        try:
            await self.app(scope, receive, recording_send)
        finally:
            _refusal.reset(token)
            # FastAPI names only its own routes in the scope; a plain Starlette route (SOAP)
            # is known by its endpoint, which says its path.
            route = scope.get("route") or scope.get("endpoint")
            template = getattr(route, "path", None)
            if template is None:
                # Answered by a middleware before routing (a body too large or too slow, the
                # in-flight cap): counted under the route the path leads to, as if routed; a
                # path no route takes under UNMATCHED, never the path itself (a callback's path
                # is the caller's to choose, and each distinct label is a series kept for ever).
                template = _route_template(scope) or UNMATCHED
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()
            self.metrics.request_seconds.labels(template).observe(time.perf_counter() - start)
            if noted.code is not None:
                self._refused(scope, noted, template)

    def _refused(self, scope: Scope, noted: _Refusal, template: str) -> None:
        door = noted.door or template
        self.metrics.refused.labels(door, noted.code).inc()
        address = noted.address
        if address is None:
            # Refused before the app knew the peer (a limit of the outer middleware): the
            # connection's own address, never a forwarded one taken unchecked.
            client = scope.get("client")
            address = str(client[0]) if client else None
        log_refusal(noted.http_status, noted.code, door, address, noted.field)


def _route_template(scope: Scope) -> str | None:
    """The template of the app's route that ``scope``'s path and method lead to."""
    router = getattr(scope.get("app"), "router", None)
    return _template_among(getattr(router, "routes", ()), scope, 0)


def _template_among(routes: Iterable[object], scope: Scope, depth: int) -> str | None:
    for route in routes:
        # A router included in another (FastAPI keeps it whole, as ``original_router``).
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        if inner is not None:
            found = _template_among(inner, scope, depth + 1) if depth < 4 else None
            if found is not None:
                return found
        elif isinstance(route, BaseRoute) and route.matches(scope)[0] is Match.FULL:
            path = getattr(route, "path", None)
            return path if isinstance(path, str) else None
    return None


def log_refusal(http_status: int, code: str | None, door: str, address: str | None,
                field: str | None) -> None:
    # Shut doors and unknown or unauthorised callers are what an operator watches for;
    # the rest (a bad body, a rate limit) is the ordinary traffic of a public service. A
    # process at its cap says so once when it fills (hub.api.limits.InFlightLimit): a line at
    # WARNING for each request it then refuses would add to the flood.
    level = (logging.WARNING if http_status in (401, 403, 503) and code != Busy.code
             else logging.INFO)
    log.log(level, "refused %s %s at %s from %s (field %s)", http_status, code, door,
            address or "unknown", field)
