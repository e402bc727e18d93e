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
    names = mapping.fields.receipt_line
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
    return [
        {
            names.kind: fee.kind,
            names.code: fee.code,
            names.name: fee.name,
            names.amount: whole_dong(fee.amount, f"fees.{i}.amount"),
        }
        for i, fee in enumerate(fees)
    ]


def init_message(
    req: PaymentRequest,
    cfg: PaymentConfig,
    mapping: PaymentMapping,
    secret: str,
    now: datetime,
) -> dict[str, Any]:
    """The INIT request for ``req``, MaXacThuc included."""
    amount = whole_dong(req.amount, "amount")
    account = mapping.beneficiary(req.agency_code)
    if account is None:
        raise ValidationError(
            f"no beneficiary account for agency {req.agency_code!r}; add a "
            f'["{req.agency_code}"] table (or [default]) to mappings/payment/beneficiaries.toml',
            code=MAPPING_FAILED,
            field="agency_code",
        )
    r = mapping.fields.receipt
    receipt = {
        r.service_code: mapping.fields.service_code,
        r.procedure_code: req.procedure_code,
        r.agency_code: req.agency_code,
        r.dossier_code: req.dossier_code,
        r.account: account.account,
        r.account_bank: account.bank,
        r.account_name: account.name,
        r.lines: _lines(req, mapping),
        r.payer_name: req.payer.name,
        r.payer_id: req.payer.identity_number,
        r.payer_address: req.payer.address or "",
    }
    message: dict[str, Any] = {
        "LoaiBanTin": "INIT",
        "PhienBan": cfg.version,
        "MaDoiTac": cfg.partner_code,
        "MaThamChieu": req.reference,
        "SoTien": amount,
        "LoaiHinhThanhToan": "PAY",
        "MaKenhThanhToan": cfg.channel_code,
        "MaThietBi": cfg.device_code,
        "NgonNgu": cfg.language,
        "MaTienTe": cfg.currency,
        "MaNganHang": cfg.bank_code,
        "ThongTinGiaoDich": req.description
        or cfg.description.format(dossier_code=req.dossier_code, reference=req.reference),
        "ThoiGianGD": mapping.time.write(now),
        "Ip": cfg.client_ip,
        "ThongTinBienLai": receipt,
    }
    return checksum.sign(message, mapping.checksum_orders["init"], secret)


def query_message(
    reference: str, cfg: PaymentConfig, mapping: PaymentMapping, secret: str, now: datetime
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "LoaiBanTin": "QUERY",
        "PhienBan": cfg.version,
        "MaDoiTac": cfg.partner_code,
        "MaThamChieu": reference,
        "ThoiGianGD": mapping.time.write(now),
    }
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
