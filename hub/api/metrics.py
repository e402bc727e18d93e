"""Prometheus metrics of the entry points: requests by route and status, intake latency, outbox
depth. Each app has its own registry, so several apps (tests) never collide. Under several
worker processes (``PROMETHEUS_MULTIPROC_DIR`` set, as ``lienthong serve --workers N`` does),
counters and histograms are shared through files and ``/metrics`` aggregates them."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
        self._depth = _OutboxDepth(outbox_depth) if outbox_depth is not None else None

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


class RequestMetrics:
    """Counts every request under its route template (``/v1/dossiers/{code}/status``, never the
    concrete path, so the label set stays bounded)."""

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

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()
            self.metrics.request_seconds.labels(template).observe(time.perf_counter() - start)
