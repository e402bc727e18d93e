"""Payment gateway of the National Public Service Portal (payment platform 1.0.6).

Consumes ``vn.gov.payment.requested`` (INIT at the gateway, emits ``vn.gov.payment.initiated``
with the payment URL), turns the gateway's callbacks into ``vn.gov.payment.completed`` and
reconciles payments left pending (``adapters.payment.reconcile``). Heavy modules are imported
only when a worker, callback or simulator is built: the registry imports every adapter.
"""

from __future__ import annotations

from typing import Any

from hub.adapters import AdapterContext, AdapterSpec


def _make_handler(ctx: AdapterContext) -> Any:
    from adapters.payment.worker import make_handler

    return make_handler(ctx)


def _make_callback(ctx: AdapterContext) -> Any:
    from adapters.payment.callback import make_callback

    return make_callback(ctx)


def _callback_secrets(ctx: AdapterContext) -> list[str]:
    from adapters.payment.config import PaymentConfig

    # The gateway's callback carries its checksum (MaXacThuc) made with the shared secret,
    # checked by the parser: the hub keeps the callback shut until the secret is set.
    return [PaymentConfig.from_mapping(ctx.config).secret_env]


def _make_simulator(**switches: Any) -> Any:
    from adapters.payment.simulator import make_simulator

    return make_simulator(**switches)


def _cli() -> Any:
    from adapters.payment.cli import app

    return app


adapter = AdapterSpec(
    name="payment",
    description="NPSP payment gateway: INIT, callbacks (MaXacThuc checked), QUERY reconciliation",
    bindings=["payment.requested.#"],
    make_handler=_make_handler,
    make_callback=_make_callback,
    callback_secrets=_callback_secrets,
    make_simulator=_make_simulator,
    # Payments of one dossier do not depend on each other's order; each is idempotent by its
    # reference, so the queue can have several consumers.
    ordered=False,
    extra={
        "cli": _cli,
        "emits": ["vn.gov.payment.initiated", "vn.gov.payment.completed"],
        "callback_path": "/v1/callbacks/payment",
        # run(ctx, publish) = reconcile(ctx) -> list[Envelope], publish, mark_emitted(ctx, ids)
        "jobs": {"reconcile": "adapters.payment.reconcile:run"},
    },
)
