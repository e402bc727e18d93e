"""The declarative part of the payment adapter: ``mappings/payment/*.toml`` loaded and checked
once, with errors naming the file and key to fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub import tomlmap
from hub.errors import ConfigError
from hub.stateful import WireTime, wire_names, wire_time

SECRET = "{secret}"
MESSAGE_KINDS = ("init", "callback", "query", "init_reply", "query_reply")
TRANSACTION_OUTCOMES = ("paid", "pending", "failed")
RECEIPT_KEYS = (
    "service_code",
    "procedure_code",
    "agency_code",
    "dossier_code",
    "account",
    "account_bank",
    "account_name",
    "lines",
    "payer_name",
    "payer_id",
    "payer_address",
)
RECEIPT_LINE_KEYS = ("kind", "code", "name", "amount")
REPLY_KEYS = ("payment_url", "error_text", "transaction_state")


load_toml = tomlmap.read


def _table(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    # Named by table and key ("errors.00"), as operators know them.
    return tomlmap.table(doc, key, where, field=key)


@dataclass(frozen=True)
class ErrorCode:
    meaning: str
    retry: bool


@dataclass(frozen=True)
class Beneficiary:
    account: str
    bank: str
    name: str


@dataclass(frozen=True)
class PaymentMapping:
    checksum_orders: dict[str, tuple[str, ...]]
    time: WireTime
    service_code: int
    receipt: dict[str, str]
    receipt_line: dict[str, str]
    reply: dict[str, str]
    errors: dict[str, ErrorCode]
    transaction_states: dict[str, str]
    beneficiaries: dict[str, Beneficiary]

    def beneficiary(self, agency_code: str) -> Beneficiary | None:
        return self.beneficiaries.get(agency_code) or self.beneficiaries.get("default")

    def error(self, code: str) -> ErrorCode | None:
        return self.errors.get(code)


def parse_checksums(
    doc: dict[str, Any], where: str = "checksums.toml"
) -> dict[str, tuple[str, ...]]:
    orders: dict[str, tuple[str, ...]] = {}
    for kind in MESSAGE_KINDS:
        table = _table(doc, kind, where)
        order = table.get("order")
        if (
            not isinstance(order, list)
            or not order
            or not all(isinstance(f, str) and f for f in order)
        ):
            raise ConfigError(
                f'[{kind}] in {where} needs order = ["Field", ..., "{SECRET}"]',
                field=f"{kind}.order",
            )
        if order.count(SECRET) != 1:
            raise ConfigError(
                f"[{kind}].order in {where} must name {SECRET!r} exactly once (where the shared "
                f"secret goes), found it {order.count(SECRET)} times",
                field=f"{kind}.order",
            )
        if len(set(order)) != len(order):
            raise ConfigError(
                f"[{kind}].order in {where} lists a field twice", field=f"{kind}.order"
            )
        orders[kind] = tuple(order)
    return orders


def load(mappings_dir: Path) -> PaymentMapping:
    base = mappings_dir / "payment"
    checksums = parse_checksums(load_toml(base / "checksums.toml"))

    fields = load_toml(base / "fields.toml")
    service_code = fields.get("service_code", 2)
    if not isinstance(service_code, int):
        raise ConfigError("fields.toml: service_code must be an integer", field="service_code")

    codes = load_toml(base / "codes.toml")
    errors: dict[str, ErrorCode] = {}
    for code, entry in _table(codes, "errors", "codes.toml").items():
        if not isinstance(entry, dict) or not isinstance(entry.get("meaning"), str):
            raise ConfigError(
                f'codes.toml: errors.{code} needs {{ meaning = "...", retry = false }}',
                field=f"errors.{code}",
            )
        errors[code] = ErrorCode(entry["meaning"], bool(entry.get("retry", False)))
    if "00" not in errors:
        raise ConfigError('codes.toml: errors must define "00" (success)', field="errors")
    states: dict[str, str] = {}
    for code, outcome in _table(codes, "transaction_states", "codes.toml").items():
        if outcome not in TRANSACTION_OUTCOMES:
            raise ConfigError(
                f"codes.toml: transaction_states.{code} = {outcome!r}; use one of "
                f"{', '.join(TRANSACTION_OUTCOMES)}",
                field=f"transaction_states.{code}",
            )
        states[str(code)] = outcome

    beneficiaries: dict[str, Beneficiary] = {}
    for agency, entry in load_toml(base / "beneficiaries.toml").items():
        if not isinstance(entry, dict):
            raise ConfigError(f"beneficiaries.toml: [{agency}] must be a table", field=agency)
        names = tomlmap.wire_names(entry, ("account", "bank", "name"),
                                   f"beneficiaries.toml [{agency}]")
        beneficiaries[agency] = Beneficiary(names["account"], names["bank"], names["name"])

    return PaymentMapping(
        checksum_orders=checksums,
        time=wire_time(fields, "the gateway"),
        service_code=service_code,
        receipt=wire_names(fields, "receipt", RECEIPT_KEYS),
        receipt_line=wire_names(fields, "receipt_line", RECEIPT_LINE_KEYS),
        reply=wire_names(fields, "reply", REPLY_KEYS),
        errors=errors,
        transaction_states=states,
        beneficiaries=beneficiaries,
    )
