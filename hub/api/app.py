"""The FastAPI application of the REST entry point.

``create_app(settings)`` builds everything from the settings: the store, the hub's signer, the
trust store and verifier of upstream signatures, the client registry, the intake service, the
outbox relay (an asyncio task started and stopped with the app) and the routes. Tests and
benchmarks pass their own parts by keyword.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from sqlalchemy import func, select
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from hub import __version__
from hub.adapters import AdapterSpec, discover
from hub.api import problems
from hub.api.auth import (
    API_KEY_HEADER,
    CLIENT_CERT_HEADER,
    ClientRegistry,
    RequestPeer,
    load_or_create_secret,
)
from hub.api.callbacks import CallbackDispatcher, context_factory
from hub.api.limits import BodySizeLimit, InFlightLimit, RateLimiter, RequestTimeoutLimit
from hub.api.metrics import Metrics, RequestMetrics
from hub.api.openapi import serve_contracts
from hub.api.rest import ApiContext, build_router
from hub.broker.heap import freeze_startup_heap
from hub.intake.drafts import EnvelopeSigner
from hub.intake.service import IntakeService, RequestVerifier
from hub.outbox.relay import ConfirmingPublisher, OutboxRelay, RelayLeader
from hub.settings import Settings
from hub.store import Store
from hub.store.tables import outbox

log = logging.getLogger(__name__)
TOKEN_SECRET_FILE = "oauth-token.key"


def _mount_soap(app: FastAPI, settings: Settings, ctx: ApiContext, wanted: bool | None,
                signer: Any) -> list[BaseRoute]:
    """The SOAP endpoint's routes (none when it is disabled), for the app's own router."""
    from hub.api import soap as soap_api
    from hub.signing.keys import KeyFiles

    key = KeyFiles.of(settings.keys_dir, soap_api.response_signer_id(settings)).key
    if wanted is False or (wanted is None and signer is None and not key.exists()):
        if wanted is None:
            log.warning(
                "SOAP entry point disabled: no SOAP signing key at %s; create it with "
                "`lienthong keys generate --system %s --alg RS256`",
                key, soap_api.response_signer_id(settings))
        return []
    if not settings.public_url:
        log.info("public_url is not set: the WSDL at %s?wsdl names the address each connection "
                 "arrives on; set LIENTHONG_PUBLIC_URL to the hub's URL as its clients reach it "
                 "(needed behind a proxy or TLS terminator)", soap_api.PATH)
    return list(soap_api.router(settings, ctx.intake, ctx.registry, signer=signer,
                                limiter=ctx.limiter).routes)


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    signer: EnvelopeSigner | None = None,
    registry: ClientRegistry | None = None,
    verifier: RequestVerifier | None = None,
    make_publisher: Callable[[], ConfirmingPublisher] | None = None,
    adapters: Mapping[str, AdapterSpec] | None = None,
    relay: bool = True,
    relay_poll_interval: float = 0.5,
    soap: bool | None = None,
    soap_signer: Any = None,
) -> FastAPI:
    """The hub's HTTP entry point: REST at /v1 and, when the hub has its SOAP signing key (an
    RSA key for ``<hub_id>-soap``) or ``soap_signer`` is given, SOAP at /soap/v1. ``soap=True``
    insists on SOAP (a missing key is an error), ``soap=False`` leaves it out."""
    own_store = store is None
    if store is None:
        store = Store.open(settings.store_url)
    if signer is None:
        from hub.signing.jws import load_signer

        signer = load_signer(settings.keys_dir, settings.hub_id, relay=True)
    if verifier is None:
        verifier = default_verifier(settings)
    if registry is None:
        secret = load_or_create_secret(settings.data_dir / TOKEN_SECRET_FILE)
        registry = ClientRegistry.load(settings.clients_file, token_secret=secret)
    if make_publisher is None:
        make_publisher = default_publisher(settings)

    metrics = Metrics(outbox_depth=lambda: _outbox_depth(store))
    intake = IntakeService(store, signer, settings, verifier)
    outbox_relay = OutboxRelay(
        store, make_publisher, poll_interval=relay_poll_interval,
        on_published=metrics.published.inc, on_failed=metrics.publish_failures.inc,
        on_stage=metrics.relay_stage, on_held_back=metrics.held_back.inc,
        leader=RelayLeader(_relay_lock_path(settings, store)) if store.dialect == "sqlite"
        else None,
    )
    intake.on_commit = outbox_relay.notify
    intake.observe_stage(metrics.intake_stage)
    if relay:
        intake.relay_lease = outbox_relay.lease_for_intake
    callbacks = CallbackDispatcher(
        adapters if adapters is not None else discover, context_factory(settings, store=store))
    ctx = ApiContext(
        settings=settings, store=store, registry=registry, intake=intake,
        limiter=RateLimiter(settings.rate_per_client), metrics=metrics, callbacks=callbacks,
        broker_ready=lambda: outbox_relay.connected,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Modules, schemas, keys and routes never die: keep full collections from rescanning
        # them while requests flow (their pauses set the tail latency); see
        # docs/performance.md#frozen-start-up-heap.
        freeze_startup_heap()
        # The intake writer thread holds the database's write lock across about ten
        # statements and waits for the GIL after each, up to the switch interval, while the
        # event loop is busy: a short interval gives it back soon (see
        # docs/performance.md#switch-interval).
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(settings.switch_interval)
        stop = asyncio.Event()
        task = asyncio.create_task(outbox_relay.run(stop), name="outbox relay") if relay else None
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task
            await asyncio.to_thread(intake.close)
            if own_store:
                store.close()
            sys.setswitchinterval(switch_interval)

    app = FastAPI(
        title="Liên Thông Hub",
        version=__version__,
        description="Entry point of the hub for upstream systems: dossiers, status changes, "
                    "progress steps, timelines, and callbacks of external systems. Every "
                    "refusal is application/problem+json with a stable dotted code.",
        lifespan=lifespan,
        middleware=[
            Middleware(RequestMetrics, metrics=metrics),
            # Inside the metrics (its refusals are counted), outside the rest: a refused
            # request costs nothing more, and an admitted one holds its place until answered.
            Middleware(InFlightLimit, limit=settings.max_in_flight),
            Middleware(RequestTimeoutLimit, seconds=settings.request_timeout),
            Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
            Middleware(RequestPeer, trusted_proxies=settings.trusted_proxies),
        ],
    )
    problems.install(app)
    soap_routes = _mount_soap(app, settings, ctx, soap, soap_signer)
    rest_router, intake_routes = build_router(ctx)
    app.include_router(rest_router)
    # The plain ASGI routes of the SOAP endpoint and of the REST intake on the app's own
    # router, first: FastAPI dispatches an included router's routes through a wrapper of its
    # own at every request (see docs/performance.md#plain-asgi-routes). SOAP first: the router
    # tries routes in order, and SOAP requests are the costlier ones.
    app.router.routes[0:0] = [*soap_routes, *intake_routes]
    # The operator console: its API (/v1/console) and pages (/console), hub.console.
    from hub.console.app import mount as mount_console

    mount_console(app, settings, store, signer, registry=metrics.registry)
    app.state.hub = ctx
    app.state.relay = outbox_relay
    # The connection's protocol refuses before the app sees a request (hub.api.protocol).
    app.state.connection_refused = metrics.connection_refused
    app.state.connection_closed = metrics.connection_closed
    app.openapi = lambda: _openapi(app, settings)  # type: ignore[method-assign]
    return app


def default_verifier(settings: Settings) -> RequestVerifier:
    from hub.signing.replay import ReplayCache
    from hub.signing.truststore import TrustStore
    from hub.signing.verifier import Verifier

    replay = ReplayCache(ttl=settings.signature_max_age + settings.clock_skew)
    return Verifier.from_settings(settings, TrustStore(settings.trust_dir), replay=replay)


def default_publisher(settings: Settings) -> Callable[[], ConfirmingPublisher]:
    from hub.broker.publisher import Publisher

    def make() -> ConfirmingPublisher:
        return Publisher(settings.broker_urls, settings, name="lienthong outbox relay")

    return make


def _relay_lock_path(settings: Settings, store: Store) -> Path:
    # Beside the database file, so processes sharing it (whatever their data_dir) agree.
    database = store.engine.url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        return Path(database).with_name(Path(database).name + ".relay.lock")
    return settings.data_dir / "outbox-relay.lock"


def _outbox_depth(store: Store) -> int | None:
    """Unpublished outbox rows, counted at scrape time (the published_at index serves it)."""
    try:
        with store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(outbox)
                                    .where(outbox.c.published_at.is_(None))).scalar_one())
    except Exception:  # a scrape must not fail because the store is down
        log.debug("outbox depth unavailable", exc_info=True)
        return None


def _openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description,
                      routes=app.routes)
    # The routes read their bodies raw and name them by contract file: the files are served.
    serve_contracts(doc, settings.schemas_dir / "api")
    doc["components"]["securitySchemes"] = {
        "apiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER},
        "oauth2": {"type": "oauth2", "flows": {"clientCredentials": {
            "tokenUrl": "/v1/oauth/token", "scopes": {}}}},
        "clientCertificate": {"type": "apiKey", "in": "header", "name": CLIENT_CERT_HEADER,
                              "description": "SHA-256 of the client certificate's DER, set by "
                                             "the TLS terminator (which must strip it from "
                                             "incoming requests); honoured only from the "
                                             "hub's trusted_proxies"},
    }
    from hub.console.app import SECURITY_SCHEMES as CONSOLE_SCHEMES

    doc["components"]["securitySchemes"].update(CONSOLE_SCHEMES)
    doc["security"] = [{"apiKey": []}, {"oauth2": []}, {"clientCertificate": []}]
    app.openapi_schema = doc
    return doc
