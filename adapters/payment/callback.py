"""The gateway's callback (``POST /v1/callbacks/payment`` on the hub), answered as
docs/adapters/payment.md tabulates: refused when it does not parse, breaks the contract or its
MaXacThuc does not match; parked for an operator when the ledger cannot apply it; else
applied, its ``vn.gov.payment.completed`` derived from the transaction and stored, so a resend
is the same message."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime

from adapters.payment import events, ledger, translate
from adapters.payment.mapping import checksum
from adapters.payment.runtime import PaymentRuntime
from hub.api.auth import request_address
from hub.envelope import Envelope
from hub.errors import ClientError, Conflict, NotFound
from hub.fieldchecksum import BadChecksum
from hub.parked import Parked
from hub.reports import CALLBACK, Desk, Settled
from hub.stateful import Part, report_body, stored

DESK = Desk(logging.getLogger(__name__), "payment", "lienthong payment mismatches")


class PaymentCallback(Part[PaymentRuntime]):
    runtime_of = PaymentRuntime.from_context

    def __call__(self, body: bytes, headers: dict[str, str]) -> list[Envelope]:
        # Refusals propagate untouched: the door logs and counts them, and nothing is kept.
        rt = self.rt
        doc = report_body(self.ctx, rt.contract, "callback", body, "the callback body")
        if not checksum.matches(doc, rt.mapping.checksum_orders["callback"], rt.cfg.secret()):
            raise BadChecksum(
                f"the MaXacThuc of the callback for {doc['MaThamChieu']!r:.60} does not match "
                "its fields; refused, nothing kept. If the gateway is genuine, compare its "
                "secret and field order with mappings/payment/checksums.toml [callback]",
                field="MaXacThuc",
            )
        # Checked before parking: a time the gateway could not have meant is a malformed
        # message, refused like any other, not a fact to weigh against the ledger.
        rt.mapping.time.read(doc["ThoiGianGD"], "ThoiGianGD")
        code = str(doc["MaLoi"])
        report = ledger.reported(doc, paid=code == "00", source=CALLBACK,
                                 digest=hashlib.sha256(body).hexdigest(), outcome_field="MaLoi",
                                 peer=request_address())
        if report.partner != rt.cfg.partner_code:
            raise self._refused(report, ledger.WORDS.reason(
                ledger.CODE_UNKNOWN_PARTNER, "MaDoiTac", said=report.partner,
                partner=rt.cfg.partner_code), ClientError)
        payment = rt.ledger.get(report.reference)
        if payment is None:
            raise self._refused(report, ledger.WORDS.reason(
                ledger.CODE_UNKNOWN_REFERENCE, "MaThamChieu", said=report.reference), NotFound)
        settled = settle(rt, payment, report, code, rt.clock(),
                         emitted=True)  # the callback route publishes
        if settled.parked is not None:
            # 409: the report conflicts with the state of the payment it names.
            raise Conflict(
                f"{settled.parked.reason}; not applied (payment {settled.state}), kept for an "
                "operator", code=settled.parked.code, field=settled.parked.field)
        return stored([settled.event] if settled.event else [])

    def _refused(self, report: ledger.Report, parked: Parked,
                 error: type[ClientError]) -> ClientError:
        rt = self.rt
        return DESK.refuse(rt.ledger, report, parked, rt.clock(), {
            "partner": rt.cfg.partner_code, "currency": rt.cfg.currency}, error)


def settle(rt: PaymentRuntime, payment: ledger.Transaction, report: ledger.Report,
           error_code: str, now: datetime, *, emitted: bool) -> Settled:
    """Apply a report of the gateway (a callback's or a QUERY reply's, checked alike) by the
    ledger's table, with the ``completed`` event its facts make when they agree with the
    ledger (``error_code``: the event's when it is no payment); a parked report is logged for
    the operator."""
    candidate = None
    if ledger.disagreement(payment, report, rt.cfg.currency) is None:
        outcome = translate.completed(payment, report, rt.mapping, now, error_code)
        causation = (json.loads(payment.initiated_event).get("id")
                     if payment.initiated_event else None)
        candidate = payment.caused(
            id=events.completed_id(rt.cfg.partner_code, payment.reference,
                                   outcome.transaction_id),
            source=rt.hub_id, type=events.COMPLETED, data=outcome.model_dump(mode="json"),
            time=outcome.at, causation=causation)
    settled = rt.ledger.settle(report, event=candidate, currency=rt.cfg.currency, now=now,
                               emitted=emitted)
    if settled.parked is not None:
        DESK.warn(report, settled.parked, settled.state)
    return settled
