"""Canonical model <-> payment gateway messages. Pure functions driven by the mapping; they
raise hub.errors.ValidationError naming the field (the worker turns that into InvalidMessage:
bad data or a mapping gap is never worth retrying)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from adapters.payment.config import PaymentConfig
from adapters.payment.ledger import Report, Transaction
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
    return [mapping.messages["fee_line"].fill({
        "kind": fee.kind, "code": fee.code, "name": fee.name,
        "amount": whole_dong(fee.amount, f"fees.{i}.amount")}) for i, fee in enumerate(fees)]


def _common(reference: str, cfg: PaymentConfig, mapping: PaymentMapping,
            now: datetime) -> dict[str, Any]:
    return {**cfg.model_dump(), "reference": reference, "time": mapping.time.write(now)}


def init_message(req: PaymentRequest, cfg: PaymentConfig, mapping: PaymentMapping, secret: str,
                 now: datetime) -> dict[str, Any]:
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
    message = mapping.messages["init"].fill({
        **_common(req.reference, cfg, mapping, now), "amount": amount,
        "description": req.description
        or cfg.description.format(dossier_code=req.dossier_code, reference=req.reference),
        "procedure_code": req.procedure_code, "agency_code": req.agency_code,
        "dossier_code": req.dossier_code, "account": account.account,
        "account_bank": account.bank, "account_name": account.name,
        "lines": _lines(req, mapping), "payer_name": req.payer.name,
        "payer_id": req.payer.identity_number, "payer_address": req.payer.address or ""})
    return checksum.sign(message, mapping.checksum_orders["init"], secret)


def query_message(reference: str, cfg: PaymentConfig, mapping: PaymentMapping, secret: str,
                  now: datetime) -> dict[str, Any]:
    message = mapping.messages["query"].fill(_common(reference, cfg, mapping, now))
    return checksum.sign(message, mapping.checksum_orders["query"], secret)


def completed(payment: Transaction, report: Report, mapping: PaymentMapping, now: datetime,
              error_code: str) -> PaymentCompleted:
    """The canonical PaymentCompleted of a verified report (a callback's or a QUERY reply's)
    whose facts agree with ``payment``: the amount the gateway reports (the payment's when a
    QUERY reply does not say), ``error_code`` when it is no payment, the time ThoiGianGD
    (``now`` when a QUERY reply has none)."""
    raw_time = report.facts.get("ThoiGianGD")
    model: PaymentCompleted = validate_model(PaymentCompleted, {
        "dossier_code": payment.dossier_code, "reference": payment.reference,
        "transaction_id": report.transaction_id, "paid": report.paid,
        "amount": Decimal(payment.amount if report.amount is None else report.amount),
        "error_code": None if report.paid else error_code,
        "at": mapping.time.read(raw_time, "ThoiGianGD") if raw_time else now})
    return model


def query_outcome(reply: dict[str, Any], mapping: PaymentMapping) -> str:
    """``paid``, ``pending`` or ``failed`` from a QUERY reply's TrangThaiGD."""
    field = mapping.fields.reply.transaction_state
    return decoded(mapping.codes.transaction_states, reply.get(field), field, "transaction state",
                   "mappings/payment/codes.toml [transaction_states]")
