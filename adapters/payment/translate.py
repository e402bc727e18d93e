"""Canonical model <-> payment gateway messages. Pure functions driven by the mapping; they
raise hub.errors.ValidationError naming the field (the worker turns that into InvalidMessage:
bad data or a mapping gap is never worth retrying)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from adapters.payment.config import PaymentConfig
from adapters.payment.mapping import PaymentMapping, checksum
from hub.errors import ValidationError
from hub.model import Fee, PaymentCompleted, PaymentRequest, validate_model
from hub.stateful import decoded, whole_dong

MAPPING_FAILED = "client.mapping_failed"


def _lines(req: PaymentRequest, mapping: PaymentMapping) -> list[dict[str, Any]]:
    fees: tuple[Fee, ...] = req.fees or (
        Fee(code=req.procedure_code, name=req.description or "Phi, le phi", amount=req.amount),
    )
    total = sum((f.amount for f in fees), Decimal(0))
    if req.fees and total != req.amount:
        raise ValidationError(
            f"the fee lines add up to {total} but amount is {req.amount}; the receipt must "
            "match the amount charged",
            field="fees",
        )
    return [mapping.fee_line.fill({"kind": fee.kind, "code": fee.code, "name": fee.name,
                                   "amount": whole_dong(fee.amount, f"fees.{i}.amount")})
            for i, fee in enumerate(fees)]


def _common(reference: str, cfg: PaymentConfig, mapping: PaymentMapping,
            now: datetime) -> dict[str, Any]:
    return {**cfg.model_dump(), "reference": reference, "time": mapping.time.write(now)}


def init_message(
    req: PaymentRequest,
    cfg: PaymentConfig,
    mapping: PaymentMapping,
    secret: str,
    now: datetime,
) -> dict[str, Any]:
    """The INIT request for ``req`` (messages.toml [init]), MaXacThuc included."""
    amount = whole_dong(req.amount, "amount")
    account = mapping.beneficiary(req.agency_code)
    if account is None:
        raise ValidationError(
            f"no beneficiary account for agency {req.agency_code!r}; add a "
            f'["{req.agency_code}"] table (or [default]) to mappings/payment/beneficiaries.toml',
            code=MAPPING_FAILED,
            field="agency_code",
        )
    message = mapping.init.fill({
        **_common(req.reference, cfg, mapping, now), "amount": amount,
        "description": req.description
        or cfg.description.format(dossier_code=req.dossier_code, reference=req.reference),
        "procedure_code": req.procedure_code, "agency_code": req.agency_code,
        "dossier_code": req.dossier_code, "account": account.account,
        "account_bank": account.bank, "account_name": account.name,
        "lines": _lines(req, mapping), "payer_name": req.payer.name,
        "payer_id": req.payer.identity_number, "payer_address": req.payer.address or ""})
    return checksum.sign(message, mapping.checksum_orders["init"], secret)


def query_message(
    reference: str, cfg: PaymentConfig, mapping: PaymentMapping, secret: str, now: datetime
) -> dict[str, Any]:
    message = mapping.query.fill(_common(reference, cfg, mapping, now))
    return checksum.sign(message, mapping.checksum_orders["query"], secret)


def completed(
    *,
    dossier_code: str,
    reference: str,
    transaction_id: str,
    amount: Any,
    paid: bool,
    error_code: str | None,
    at: datetime,
) -> PaymentCompleted:
    model: PaymentCompleted = validate_model(PaymentCompleted, {
        "dossier_code": dossier_code, "reference": reference, "transaction_id": transaction_id,
        "amount": Decimal(str(amount)), "paid": paid, "error_code": error_code, "at": at})
    return model


def from_callback(
    doc: dict[str, Any], dossier_code: str, mapping: PaymentMapping
) -> PaymentCompleted:
    """A verified callback as the canonical PaymentCompleted. ``MaLoi`` "00" is a payment;
    anything else is a failed attempt, reported with its code."""
    ok = str(doc["MaLoi"]) == "00"
    return completed(
        dossier_code=dossier_code,
        reference=str(doc["MaThamChieu"]),
        transaction_id=str(doc["MaGiaoDich"]),
        amount=doc["SoTien"],
        paid=ok,
        error_code=None if ok else str(doc["MaLoi"]),
        at=mapping.time.read(doc["ThoiGianGD"], "ThoiGianGD"),
    )


def query_outcome(reply: dict[str, Any], mapping: PaymentMapping) -> str:
    """``paid``, ``pending`` or ``failed`` from a QUERY reply's TrangThaiGD."""
    field = mapping.fields.reply.transaction_state
    return decoded(mapping.codes.transaction_states, reply.get(field), field, "transaction state",
                   "mappings/payment/codes.toml [transaction_states]")
