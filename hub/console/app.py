"""The console in the hub's HTTP entry point: ``mount(app, ...)`` adds the API and the pages,
with a service that publishes replays through a publisher of its own (started at the first
replay) and finds work queues in the topology of the installed adapters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from hub.broker.messages import Outgoing
from hub.console.accounts import Accounts
from hub.console.health import BrokerView, PipelineCollector, extra_checks
from hub.console.service import ConsoleService
from hub.console.web import Console, api_router, dead_letters_last_hour, page_router
from hub.store import Store
from hub.store.circuitboard import StoreCircuitBoard

# The OpenAPI security schemes of the console's API (hub.api.app adds them to the document).
SECURITY_SCHEMES: dict[str, Any] = {
    "operatorBasic": {"type": "http", "scheme": "basic",
                      "description": "a console operator's name and password"},
    "operatorSession": {"type": "http", "scheme": "bearer",
                        "description": "a session token from POST /v1/console/sessions"},
}


class LazyPublisher:
    """Connects at the first publish: a hub nobody replays from keeps no extra connection."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._publisher: Any = None
        self._lock: asyncio.Lock | None = None

    async def __call__(self, outgoing: Outgoing) -> None:
        from hub.broker.publisher import Publisher

        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._publisher is None:
                publisher = Publisher(self.settings.broker_urls, self.settings,
                                      name="lienthong console")
                await publisher.start()
                self._publisher = publisher
        await self._publisher.publish(outgoing)


def build_service(settings: Any, store: Store, signer: Any = None) -> ConsoleService:
    from hub.broker.destinations import discover_destinations
    from hub.broker.topology import Topology
    from hub.runtime import hub_signer, queue_verifier

    installed, _ = discover_destinations()
    topology = Topology.from_settings(settings, installed)
    if signer is None:
        try:
            signer = hub_signer(settings)
        except Exception:  # no key yet: browsing works, editing says what is missing
            signer = None
    try:
        verifier = queue_verifier(settings)
    except Exception:
        verifier = None
    return ConsoleService(settings, store, publish=LazyPublisher(settings), signer=signer,
                          verifier=verifier, topology=topology)


def alerts_of(settings: Any, service: ConsoleService,
              warnings: Callable[[], dict[str, str]] | None = None) -> dict[str, Any]:
    """The thresholds, the dead letters of the last hour, and what is wrong now: the readiness
    checks that warn (an open or stale circuit, a certificate close to expiry, no keeper)."""
    checks = warnings() if warnings is not None else {}
    return {"dead_letters_per_hour": settings.alert_dead_letters_per_hour,
            "queue_age_minutes": settings.alert_queue_age_minutes,
            "certificate_days": settings.alert_certificate_days,
            "last_hour": dead_letters_last_hour(service),
            "warnings": {name: text.removeprefix("warning: ")
                         for name, text in sorted(checks.items()) if text != "ok"}}


def mount(app: FastAPI, settings: Any, store: Store, signer: Any = None,
          registry: CollectorRegistry | None = None) -> Console:
    """Add the console's routes to ``app``, its pipeline metrics to ``registry`` (the app's)
    and, as ``app.state.readiness_extra``, the checks /readyz adds to its own."""
    service = build_service(settings, store, signer)
    view = BrokerView(settings, service.topology, store.queue_ledger)
    board = StoreCircuitBoard(store.engine)
    if registry is not None:
        registry.register(PipelineCollector(settings, store, view, board))
    def warnings() -> dict[str, str]:
        return extra_checks(settings, view, board)

    app.state.readiness_extra = warnings
    console = Console(service, Accounts(store, settings.console_session_ttl),
                      secure_cookies=settings.public_url.startswith("https://"))
    names = sorted(d.name for d in service.topology.destinations) if service.topology else []
    app.include_router(api_router(console))
    app.include_router(page_router(console, lambda: names,
                                   lambda: alerts_of(settings, service, warnings)))
    app.state.console = console
    return console
