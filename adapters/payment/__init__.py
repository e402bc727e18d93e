"""Payment gateway of the National Public Service Portal (payment platform 1.0.6).

Consumes ``vn.gov.payment.requested`` (INIT at the gateway, emits ``vn.gov.payment.initiated``
with the payment URL), turns the gateway's callbacks into ``vn.gov.payment.completed`` and
reconciles payments left pending (``adapters.payment.reconcile``). Heavy modules are imported
only when a worker, callback or simulator is built: the registry imports every adapter.
"""

from __future__ import annotations

from hub.adapters import AdapterSpec
from hub.lazy import lazy, secret_variables

adapter = AdapterSpec(
    name="payment",
    description="NPSP payment gateway: INIT, callbacks (MaXacThuc checked), QUERY reconciliation",
    bindings=["payment.requested.#"],
    make_handler=lazy("adapters.payment.worker:PaymentWorker"),
    make_callback=lazy("adapters.payment.callback:PaymentCallback"),
    # The gateway's callback carries its checksum (MaXacThuc) made with the shared secret,
    # checked by the parser: the hub keeps the callback shut until the secret is set.
    callback_secrets=secret_variables("adapters.payment.config:PaymentConfig", "secret_env"),
    make_simulator=lazy("adapters.payment.simulator:make_simulator"),
    # Payments of one dossier do not depend on each other's order; each is idempotent by its
    # reference, so the queue can have several consumers.
    ordered=False,
    extra={
        "emits": ["vn.gov.payment.initiated", "vn.gov.payment.completed"],
        "callback_path": "/v1/callbacks/payment",
        # `lienthong payment reconcile`, `lienthong payment mismatches` (hub.cli.adaptercommands)
        "jobs": {"reconcile": "adapters.payment.reconcile:run"},
        "admin": {"mismatches": "adapters.payment.runtime:mismatches"},
    },
)
