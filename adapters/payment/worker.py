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

from adapters.payment import events, ledger, translate
from adapters.payment.client import PaymentClient
from adapters.payment.runtime import PaymentRuntime
from hub.envelope import Envelope
from hub.errors import InvalidMessage, PermanentError
from hub.model import PaymentInitiated, PaymentRequest, parse_event_data
from hub.privacy import mask_identity
from hub.stateful import Requested, StatefulWorker, canonical, stored

log = logging.getLogger(__name__)


class PaymentWorker(StatefulWorker[PaymentRuntime]):
    consumes = events.REQUESTED
    runtime_of = PaymentRuntime.from_context
    client_of = PaymentClient
    client: PaymentClient

    async def handle(self, env: Envelope) -> list[Envelope]:
        rt, client = self.rt, self.client
        now = rt.clock()
        with canonical():
            request = parse_event_data(env.type, env.data)
            assert isinstance(request, PaymentRequest)
            message = translate.init_message(request, rt.cfg, rt.mapping, rt.cfg.secret(), now)
        rt.contract.validate("init", message, error=InvalidMessage, code="client.mapping_failed")
        asked = ledger.Transaction(
            reference=request.reference, partner=rt.cfg.partner_code, amount=message["SoTien"],
            **Requested.of(env, request.dossier_code, now, agency=request.agency_code,
                           procedure=request.procedure_code))
        payment = ledger.same_payment(await asyncio.to_thread(rt.ledger.add, asked), asked)
        if payment.initiated_event is not None:
            log.info("payment %s already initiated; re-emitting its event", request.reference)
            return stored([payment.initiated_event])
        if payment.status == ledger.REFUSED:
            # An operator replays a request the gateway refused: try again.
            await asyncio.to_thread(rt.ledger.step, request.reference, ledger.INIT_RETRIED, now)
        elif payment.status != ledger.PENDING:
            log.info("payment %s is already %s; nothing to do", request.reference, payment.status)
            return []

        log.info("INIT payment %s for dossier %s, %s VND, payer %s", request.reference,
                 request.dossier_code, message["SoTien"],
                 mask_identity(request.payer.identity_number))
        try:
            reply = await client.call("init", message)
        except PermanentError as exc:
            if exc.code == "system.rejected":
                # The gateway refused it: no payment exists there, so reconciliation has
                # nothing to ask about. (A reply we cannot trust leaves the payment pending.)
                await asyncio.to_thread(rt.ledger.step, request.reference, ledger.INIT_REFUSED,
                                        now)
            raise
        url = client.url(reply, rt.mapping.fields.reply.payment_url, f"the gateway accepted "
                         f"{request.reference!r} but sent no usable payment URL")
        data = PaymentInitiated(dossier_code=request.dossier_code, reference=request.reference,
                                amount=request.amount, payment_url=url, at=now)
        initiated = env.derive(source=rt.hub_id, type=events.INITIATED,
                               data=data.model_dump(mode="json"),
                               id=events.initiated_id(rt.cfg.partner_code, request.reference),
                               time=now)
        return stored([await asyncio.to_thread(rt.ledger.initiated, request.reference, url,
                                               initiated, now)])
