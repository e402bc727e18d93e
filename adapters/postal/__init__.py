"""Public postal service (bưu chính công ích): pick-up of dossiers and return of results.

Consumes ``vn.gov.postal.pickup-requested`` (a waybill from the pool, create order, emits
``vn.gov.postal.tracking-updated`` state 1), turns the service's tracking webhooks into
``vn.gov.postal.tracking-updated`` and polls tracking (``adapters.postal.tracking``). The
waybill pool is loaded with ``adapters.postal.admin.pool_add``. Heavy modules are imported only
when a worker, callback or simulator is built: the registry imports every adapter.
"""

from __future__ import annotations

from typing import Any

from hub.adapters import AdapterContext, AdapterSpec


def _make_handler(ctx: AdapterContext) -> Any:
    from adapters.postal.worker import make_handler

    return make_handler(ctx)


def _make_callback(ctx: AdapterContext) -> Any:
    from adapters.postal.callback import make_callback

    return make_callback(ctx)


def _callback_secrets(ctx: AdapterContext) -> list[str]:
    from adapters.postal.config import PostalConfig

    # The service's webhook carries a shared token (webhook_token_header), checked by the
    # parser: the hub keeps the webhook shut until the variable holding it is set.
    return [PostalConfig.from_mapping(ctx.config).webhook_token_env]


def _make_simulator(**switches: Any) -> Any:
    from adapters.postal.simulator import make_simulator

    return make_simulator(**switches)


def _cli() -> Any:
    from adapters.postal.cli import app

    return app


adapter = AdapterSpec(
    name="postal",
    description="Public postal service: orders on pre-allocated waybills, tracking by webhook "
    "and polling",
    bindings=["postal.pickup-requested.#"],
    make_handler=_make_handler,
    make_callback=_make_callback,
    callback_secrets=_callback_secrets,
    make_simulator=_make_simulator,
    # Orders are independent and idempotent per dossier and direction: several consumers may
    # share the queue (the waybill pool is safe under concurrency).
    ordered=False,
    extra={
        "cli": _cli,
        "emits": ["vn.gov.postal.tracking-updated"],
        "callback_path": "/v1/callbacks/postal",
        "jobs": {"poll": "adapters.postal.tracking:run"},
        "admin": {
            "pool add": "adapters.postal.admin:pool_add",
            "pool status": "adapters.postal.admin:pool_status",
        },
    },
)
