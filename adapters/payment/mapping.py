"""The declarative part of the payment adapter: ``mappings/payment/*.toml`` loaded and checked
once (``hub.tomlmap.checked``), errors naming the file and the key (``errors.00``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from hub import tomlmap
from hub.fieldchecksum import FieldChecksum, parse_orders
from hub.stateful import WireTime, fields_file
from hub.tomlmap import Table, TimedFile, WireName
from hub.wiretemplate import Messages

checksum = FieldChecksum("MaXacThuc")
MESSAGE_KINDS = ("init", "callback", "query", "init_reply", "query_reply")


class Reply(Table):
    payment_url: WireName
    error_text: WireName
    transaction_state: WireName


class Fields(TimedFile):
    reply: Reply


class ErrorCode(Table):
    meaning: str
    retry: bool = False


class Codes(Table):
    errors: Annotated[dict[str, ErrorCode], tomlmap.listing("00", "success")]
    # TrangThaiGD in QUERY replies -> what reconciliation does with the transaction.
    transaction_states: dict[str, Literal["paid", "pending", "failed"]]


class Beneficiary(Table):
    account: WireName
    bank: WireName
    name: WireName


@dataclass(frozen=True)
class PaymentMapping:
    fields: Fields
    time: WireTime
    codes: Codes
    checksum_orders: dict[str, tuple[str, ...]]
    beneficiaries: dict[str, Beneficiary]
    messages: Messages  # init, fee_line, query; personal: the payer's data

    def beneficiary(self, agency_code: str) -> Beneficiary | None:
        return self.beneficiaries.get(agency_code) or self.beneficiaries.get("default")


def parse_checksums(doc: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    return parse_orders(doc, MESSAGE_KINDS, "checksums.toml")


def load(mappings_dir: Path) -> PaymentMapping:
    base = mappings_dir / "payment"
    fields, time = fields_file(Fields, base / "fields.toml")
    return PaymentMapping(
        fields=fields, time=time, codes=tomlmap.load(Codes, base / "codes.toml", dotted=True),
        checksum_orders=parse_checksums(tomlmap.read(base / "checksums.toml")),
        beneficiaries=tomlmap.tables(Beneficiary, base / "beneficiaries.toml", dotted=True),
        messages=Messages.load(base / "messages.toml", "init", "fee_line", "query"))
