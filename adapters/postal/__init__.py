"""Public postal service (bưu chính công ích): pick-up of dossiers and return of results.

Consumes ``vn.gov.postal.pickup-requested`` (a waybill from the pool, create order, emits
``vn.gov.postal.tracking-updated`` state 1), turns the service's tracking webhooks into
``vn.gov.postal.tracking-updated`` and polls tracking (``adapters.postal.tracking``). The
waybill pool is loaded with ``adapters.postal.admin.pool_add``. Heavy modules are imported only
when a worker, callback or simulator is built: the registry imports every adapter.
"""

from __future__ import annotations

from hub.adapters import AdapterSpec
from hub.lazy import lazy, secret_variables

adapter = AdapterSpec(
    name="postal",
    description="Public postal service: orders on pre-allocated waybills, tracking by webhook "
    "and polling",
    bindings=["postal.pickup-requested.#"],
    make_handler=lazy("adapters.postal.worker:PostalWorker"),
    make_callback=lazy("adapters.postal.callback:PostalWebhook"),
    # The service's webhook carries a shared token (webhook_token_header), checked by the
    # parser: the hub keeps the webhook shut until the variable holding it is set.
    callback_secrets=secret_variables("adapters.postal.config:PostalConfig",
                                      "webhook_token_env"),
    make_simulator=lazy("adapters.postal.simulator:make_simulator"),
    # Orders are independent and idempotent per dossier and direction: several consumers may
    # share the queue (the waybill pool is safe under concurrency).
    ordered=False,
    extra={
        "emits": ["vn.gov.postal.tracking-updated"],
        "callback_path": "/v1/callbacks/postal",
        # `lienthong postal poll`, `lienthong postal pool add|status` (hub.cli.adaptercommands)
        "jobs": {"poll": "adapters.postal.tracking:run"},
        "admin": {
            "pool add": "adapters.postal.admin:pool_add",
            "pool status": "adapters.postal.admin:pool_status",
        },
    },
)
