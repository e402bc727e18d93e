"""The gateway's callback (``POST /v1/callbacks/payment`` on the hub): the result of a payment.

A callback is applied only when its MaXacThuc matches; otherwise it is refused with
``client.bad_checksum`` and recorded (``payment_callbacks``), never applied. A verified
callback becomes a ``vn.gov.payment.completed`` envelope whose id is derived from partner,
reference and gateway transaction id, and whose bytes are stored: the same callback sent again
yields the same message, which the hub's idempotency absorbs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from adapters.payment import checksum, contract, events, ledger, translate
from adapters.payment.runtime import PaymentRuntime
from hub.adapters import AdapterContext
from hub.envelope import Envelope
from hub.errors import ClientError, HubError, ValidationError
from hub.jsonbody import parse_json

log = logging.getLogger(__name__)


class BadChecksum(ClientError):
    """A callback whose MaXacThuc does not match: not from the gateway, or altered."""

    code = "client.bad_checksum"
    http_status = 401


class UnknownPayment(ClientError):
    code = "client.unknown_reference"
    http_status = 404


CallbackFn = Callable[[bytes, dict[str, str]], list[Envelope]]


def _peer(headers: dict[str, str]) -> str | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered.get("x-forwarded-for") or lowered.get("x-real-ip") or lowered.get("x-peer")


class PaymentCallback:
    def __init__(self, ctx: AdapterContext, runtime: PaymentRuntime | None = None) -> None:
        self.ctx = ctx
        self.rt = runtime or PaymentRuntime.from_context(ctx)

    def __call__(self, body: bytes, headers: dict[str, str]) -> list[Envelope]:
        rt = self.rt
        now = rt.clock()
        digest = hashlib.sha256(body).hexdigest()
        doc: dict[str, Any] = {}
        try:
            doc = self._parse(body)
            envelope = self._apply(doc)
        except HubError as exc:
            ledger.record_callback(
                rt.engine,
                body=body,
                body_sha256=digest,
                reference=_text(doc.get("MaThamChieu")),
                transaction_id=_text(doc.get("MaGiaoDich")),
                accepted=False,
                reason_code=exc.code,
                reason=exc.message,
                event_id=None,
                peer=_peer(headers),
                now=now,
            )
            self._log_to_store(doc, digest, headers, exc)
            log.warning("payment callback refused (%s): %s", exc.code, exc.message)
            raise
        ledger.record_callback(
            rt.engine,
            body=body,
            body_sha256=digest,
            reference=str(doc["MaThamChieu"]),
            transaction_id=str(doc["MaGiaoDich"]),
            accepted=True,
            reason_code=None,
            reason=None,
            event_id=envelope.id,
            peer=_peer(headers),
            now=now,
        )
        return [envelope]

    def _parse(self, body: bytes) -> dict[str, Any]:
        doc = parse_json(body, max_depth=self.ctx.settings.max_json_depth,
                         what="the callback body")
        if not isinstance(doc, dict):
            raise ClientError("the callback body is not a JSON object", code="client.unparseable")
        contract.check(
            self.rt.schemas_dir, "callback", doc, ValidationError, "client.schema_invalid"
        )
        return doc

    def _apply(self, doc: dict[str, Any]) -> Envelope:
        rt = self.rt
        if not checksum.matches(doc, rt.mapping.checksum_orders["callback"], rt.secret):
            raise BadChecksum(
                f"the MaXacThuc of the callback for {doc['MaThamChieu']!r} does not match its "
                "fields; refused and recorded. If the gateway is genuine, compare its secret and "
                "field order with mappings/payment/checksums.toml [callback]",
                field="MaXacThuc",
            )
        if doc["MaDoiTac"] != rt.cfg.partner_code:
            raise ClientError(
                f"the callback is addressed to partner {doc['MaDoiTac']!r}, not this hub's "
                f"{rt.cfg.partner_code!r}",
                code="client.unknown_partner",
                field="MaDoiTac",
            )
        reference = str(doc["MaThamChieu"])
        payment = ledger.get(rt.engine, reference)
        if payment is None:
            raise UnknownPayment(
                f"no payment with reference {reference!r} was initiated by this hub",
                field="MaThamChieu",
            )
        outcome = translate.from_callback(doc, payment.dossier_code, rt.mapping)
        if int(outcome.amount) != payment.amount:
            log.warning(
                "payment %s: the gateway reports %s VND, %s VND were requested",
                reference,
                outcome.amount,
                payment.amount,
            )
        candidate = completed_envelope(rt, payment, outcome.model_dump(mode="json"), outcome.at)
        stored = ledger.settle(
            rt.engine,
            reference=reference,
            transaction_id=outcome.transaction_id,
            paid=outcome.paid,
            event=candidate,
            settled_by="callback",
            now=rt.clock(),
            emitted=True,  # the hub's callback endpoint publishes what this returns
        )
        return Envelope.from_bytes(stored.encode())

    def _log_to_store(
        self, doc: dict[str, Any], digest: str, headers: dict[str, str], exc: HubError
    ) -> None:
        """Also write a refused callback to the hub's message log when the store has one."""
        begin = getattr(self.ctx.store, "begin", None)
        if begin is None:
            return
        from hub.store import LogFields

        fields = LogFields(
            message_id=f"payment-callback:{digest}",
            type=f"payment.callback.refused:{exc.code}",
            source="system:payment",
            subject=_text(doc.get("MaThamChieu")),
        )
        try:
            with begin() as tx:
                tx.log("in", fields, digest, _peer(headers) or "system:payment")
        except Exception:
            # The adapter's own payment_callbacks table already holds the record.
            log.exception("could not write the refused payment callback to the message log")


def completed_envelope(
    rt: PaymentRuntime, payment: ledger.Transaction, data: dict[str, Any], at: Any
) -> Envelope:
    causation = None
    if payment.initiated_event:
        causation = json.loads(payment.initiated_event).get("id")
    return Envelope.new(
        id=events.completed_id(rt.cfg.partner_code, payment.reference, data["transaction_id"]),
        source=rt.hub_id,
        type=events.COMPLETED,
        subject=payment.dossier_code,
        data=data,
        agency=payment.agency,
        procedure=payment.procedure,
        correlationid=payment.correlation_id,
        causationid=causation or payment.request_id,
        time=at,
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def make_callback(ctx: AdapterContext) -> PaymentCallback:
    return PaymentCallback(ctx)
