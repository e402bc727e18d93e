"""The payment worker: ``vn.gov.payment.requested`` -> INIT at the gateway -> an event
``vn.gov.payment.initiated`` carrying the URL where the citizen pays.

The payment is recorded as pending *before* INIT is sent, so a callback can always be tied to
its dossier and a request whose reply was lost is found by reconciliation. A redelivered
request re-emits the stored ``initiated`` event byte for byte instead of calling the gateway
again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from adapters.payment import contract, events, ledger, translate
from adapters.payment.client import PaymentClient
from adapters.payment.runtime import PaymentRuntime
from hub.adapters import AdapterContext
from hub.envelope import Envelope
from hub.errors import InvalidMessage, PermanentError, ValidationError
from hub.model import PaymentInitiated, PaymentRequest
from hub.privacy import mask_identity

log = logging.getLogger(__name__)


class PaymentWorker:
    """The handler of the payment work queue (an async callable over deliveries)."""

    def __init__(self, ctx: AdapterContext, runtime: PaymentRuntime | None = None) -> None:
        self.ctx = ctx
        self.rt = runtime or PaymentRuntime.from_context(ctx)
        self.client = PaymentClient(
            self.rt.cfg, self.rt.mapping, self.rt.secret, self.rt.schemas_dir
        )

    async def __call__(self, delivery: Any) -> list[Any]:
        from hub.broker.messages import Outgoing  # the broker layer is only needed at run time

        emitted = await self.process(delivery.envelope)
        return [Outgoing.signed(env, self.ctx.signer, self.ctx.events_exchange) for env in emitted]

    async def aclose(self) -> None:
        await self.client.aclose()

    async def process(self, env: Envelope) -> list[Envelope]:
        if env.type != events.REQUESTED:
            raise InvalidMessage(
                f"the payment worker handles {events.REQUESTED}, not {env.type}; check the "
                "work queue's bindings",
                code="client.unexpected_type",
                field="type",
            )
        rt = self.rt
        now = rt.clock()
        try:
            request = events.validate(env.type, env.data)
            assert isinstance(request, PaymentRequest)
            message = translate.init_message(request, rt.cfg, rt.mapping, rt.secret, now)
        except ValidationError as exc:
            raise events.as_invalid(exc) from None
        contract.check(rt.schemas_dir, "init", message, InvalidMessage, "client.mapping_failed")

        payment = await asyncio.to_thread(
            ledger.open_transaction,
            rt.engine,
            reference=request.reference,
            partner=rt.cfg.partner_code,
            dossier_code=request.dossier_code,
            agency=env.agency or request.agency_code,
            procedure=env.procedure or request.procedure_code,
            amount=message["SoTien"],
            request_id=env.id,
            correlation_id=env.correlationid or env.id,
            now=now,
        )
        if payment.initiated_event is not None:
            log.info("payment %s already initiated; re-emitting its event", request.reference)
            return [Envelope.from_bytes(payment.initiated_event.encode())]
        if payment.status == ledger.REFUSED:
            # An operator replays a request the gateway refused: try again.
            await asyncio.to_thread(
                ledger.step, rt.engine, request.reference, ledger.INIT_RETRIED, now
            )
        elif payment.status != ledger.PENDING:
            log.info("payment %s is already %s; nothing to do", request.reference, payment.status)
            return []

        log.info(
            "INIT payment %s for dossier %s, %s VND, payer %s",
            request.reference,
            request.dossier_code,
            message["SoTien"],
            mask_identity(request.payer.identity_number),
        )
        try:
            reply = await self.client.init(message)
        except PermanentError as exc:
            if exc.code == "system.rejected":
                # The gateway refused it: no payment exists there, so reconciliation has
                # nothing to ask about. (A reply we cannot trust leaves the payment pending.)
                await asyncio.to_thread(
                    ledger.step, rt.engine, request.reference, ledger.INIT_REFUSED, now
                )
            raise
        url = reply.get(rt.mapping.reply["payment_url"])
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise PermanentError(
                f"the gateway accepted {request.reference!r} but sent no usable payment URL "
                f"({url!r:.80})",
                code="system.bad_reply",
                field=rt.mapping.reply["payment_url"],
                origin="system:payment",
            )
        data = PaymentInitiated(
            dossier_code=request.dossier_code,
            reference=request.reference,
            amount=request.amount,
            payment_url=url,
            at=now,
        ).model_dump(mode="json")
        initiated = env.derive(
            source=rt.hub_id,
            type=events.INITIATED,
            data=data,
            id=events.initiated_id(rt.cfg.partner_code, request.reference),
            time=now,
        )
        stored = await asyncio.to_thread(
            ledger.set_initiated, rt.engine, request.reference, url, initiated, now
        )
        return [Envelope.from_bytes(stored.encode())]


def make_handler(ctx: AdapterContext) -> PaymentWorker:
    return PaymentWorker(ctx)
