"""The gateway's callback (``POST /v1/callbacks/payment`` on the hub): the result of a payment.

Three kinds of answer:

- refused: the body does not parse, breaks the contract, or its MaXacThuc does not match (not
  the gateway, or altered). Nothing is written anywhere: the hub's door logs the refusal with
  the caller's address and counts it (``lienthong_refused_total{door="callback:payment"}``).
- parked (409, 404 or 400): the checksum matches, so the gateway said it, but the ledger cannot
  apply it: the amount, currency, partner or reference differ from the payment's, the payment is
  already paid, or the gateway had refused its INIT. The payment is not marked paid and no event
  is published; the report is kept for an operator (``payment_mismatches``, ``lienthong payment
  mismatches``) and logged as a WARNING. The message log never holds it.
- applied (202): a ``vn.gov.payment.completed`` envelope whose id is derived from partner,
  reference and gateway transaction id, and whose bytes are stored: the same callback sent
  again yields the same message, which the hub's idempotency absorbs.

The payment's state moves by the ledger's table of transitions (``ledger.TRANSITIONS``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from adapters.payment import events, ledger, translate
from adapters.payment.mapping import checksum
from adapters.payment.runtime import PaymentRuntime
from hub.api.auth import request_address
from hub.envelope import Envelope
from hub.errors import ClientError
from hub.parked import Parked
from hub.stateful import Part, report_body, stored

log = logging.getLogger(__name__)


class BadChecksum(ClientError):
    """A callback whose MaXacThuc does not match: not from the gateway, or altered."""

    code = "client.bad_checksum"
    http_status = 401


class UnknownPayment(ClientError):
    code = ledger.CODE_UNKNOWN_REFERENCE
    http_status = 404


class PaymentParked(ClientError):
    """The gateway's report disagrees with the ledger: not applied, kept for an operator.
    409: the report conflicts with the state of the payment it names."""

    code = ledger.CODE_MISMATCH
    http_status = 409


class PaymentCallback(Part[PaymentRuntime]):
    runtime_of = PaymentRuntime.from_context

    def __call__(self, body: bytes, headers: dict[str, str]) -> list[Envelope]:
        # Refusals propagate untouched: the door logs and counts them, and nothing is kept.
        rt = self.rt
        doc = report_body(self.ctx, rt.contract, "callback", body, "the callback body")
        if not checksum.matches(doc, rt.mapping.checksum_orders["callback"], rt.secret):
            raise BadChecksum(
                f"the MaXacThuc of the callback for {doc['MaThamChieu']!r:.60} does not match "
                "its fields; refused, nothing kept. If the gateway is genuine, compare its "
                "secret and field order with mappings/payment/checksums.toml [callback]",
                field="MaXacThuc",
            )
        return self._apply(doc, hashlib.sha256(body).hexdigest())

    def _apply(self, doc: dict[str, Any], digest: str) -> list[Envelope]:
        rt = self.rt
        # Checked before parking: a time the gateway could not have meant is a malformed
        # message, refused like any other, not a fact to weigh against the ledger.
        rt.mapping.time.read(doc["ThoiGianGD"], "ThoiGianGD")
        report = ledger.Report(
            reference=str(doc["MaThamChieu"]), transaction_id=str(doc["MaGiaoDich"]),
            paid=str(doc["MaLoi"]) == "00", amount=int(doc["SoTien"]),
            currency=str(doc["MaTienTe"]), partner=str(doc["MaDoiTac"]), facts=doc,
            digest=digest, source="callback", outcome_field="MaLoi", peer=request_address())
        if report.partner != rt.cfg.partner_code:
            self._park_unmatched(report, Parked(
                ledger.CODE_UNKNOWN_PARTNER,
                f"the callback is addressed to partner {report.partner!r:.60}, not this hub's "
                f"{rt.cfg.partner_code!r}", "MaDoiTac"), 400)
        payment = rt.ledger.get(report.reference)
        if payment is None:
            self._park_unmatched(report, Parked(
                ledger.CODE_UNKNOWN_REFERENCE,
                f"no payment with reference {report.reference!r:.60} was initiated by this hub",
                "MaThamChieu"), 404)
        assert payment is not None
        candidate = None
        if ledger.disagreement(payment, report, rt.cfg.currency) is None:
            outcome = translate.from_callback(doc, payment.dossier_code, rt.mapping)
            candidate = completed_envelope(rt, payment, outcome.model_dump(mode="json"),
                                           outcome.at)
        settled = rt.ledger.settle(report, event=candidate, currency=rt.cfg.currency,
                                   now=rt.clock(), emitted=True)  # the callback route publishes
        if settled.parked is not None:
            warn_parked(report, settled.parked, settled.state)
            raise PaymentParked(
                f"{settled.parked.reason}; not applied (payment {settled.state}), kept for an "
                "operator", code=settled.parked.code, field=settled.parked.field)
        return stored([settled.event] if settled.event else [])

    def _park_unmatched(self, report: ledger.Report, parked: Parked, status: int) -> None:
        rt = self.rt
        rt.ledger.park(report, parked, rt.clock(), expected={"partner": rt.cfg.partner_code,
                                                            "currency": rt.cfg.currency})
        warn_parked(report, parked, None)
        error = UnknownPayment if status == 404 else ClientError
        raise error(f"{parked.reason}; kept for an operator", code=parked.code,
                    field=parked.field)


def warn_parked(report: ledger.Report, parked: Parked, state: str | None) -> None:
    log.warning(
        "payment %s: the gateway's %s (transaction %s, from %s) is parked for an operator "
        "(%s): %s; the payment stays %s. See `lienthong payment mismatches`.",
        report.reference, report.source, report.transaction_id, report.peer or "-",
        parked.code, parked.reason, state or "unknown to the ledger",
    )


def completed_envelope(
    rt: PaymentRuntime, payment: ledger.Transaction, data: dict[str, Any], at: Any
) -> Envelope:
    causation = json.loads(payment.initiated_event).get("id") if payment.initiated_event else None
    return Envelope.new(
        id=events.completed_id(rt.cfg.partner_code, payment.reference, data["transaction_id"]),
        source=rt.hub_id, type=events.COMPLETED, subject=payment.dossier_code, data=data,
        agency=payment.agency, procedure=payment.procedure, correlationid=payment.correlation_id,
        causationid=causation or payment.request_id, time=at,
    )
