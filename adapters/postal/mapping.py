"""The declarative part of the postal adapter: ``mappings/postal/*.toml`` loaded and checked
once (``hub.tomlmap.checked``), errors naming the file and the key (``order_status.101``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, StrictInt, model_validator
from pydantic_core import PydanticCustomError

from hub import tomlmap
from hub.stateful import WireTime, fields_file
from hub.tomlmap import Table, TimedFile, WireName
from hub.wiretemplate import Messages


class Reply(Table):
    status: WireName
    message: WireName
    data: WireName


class Tracking(Table):
    order_number: WireName
    page: WireName
    page_size: WireName
    total_pages: WireName
    items: WireName
    waybill: WireName
    state: WireName
    time: WireName
    note: WireName


class Fields(TimedFile):
    reply: Reply
    tracking: Tracking


OUTCOMES = ("accepted", "duplicate", "waybill_used", "rejected", "retry")


class OrderStatus(Table):
    outcome: str
    meaning: str = ""

    @model_validator(mode="after")
    def _known(self) -> OrderStatus:
        # Checked on the entry, so that the error names the status (order_status.103).
        if self.outcome not in OUTCOMES:
            raise PydanticCustomError("outcome", f"needs outcome = one of {', '.join(OUTCOMES)}")
        return self


def _accepting(statuses: dict[str, OrderStatus]) -> dict[str, OrderStatus]:
    if not any(s.outcome == "accepted" for s in statuses.values()):
        raise PydanticCustomError("accepted", 'has no status with outcome = "accepted"')
    return statuses


# The canonical states: 0 not used, 1 registered, 2 collecting, 3 delivered, 4 cancelled.
State = Annotated[StrictInt, Field(ge=0, le=4)]


class Terminal(Table):
    states: frozenset[State] = frozenset({3, 4})


class Statuses(Table):
    order_status: Annotated[dict[str, OrderStatus], AfterValidator(_accepting)]
    collection_state: dict[str, State]
    terminal: Terminal


@dataclass(frozen=True)
class PostalMapping:
    fields: Fields
    time: WireTime
    statuses: Statuses
    messages: Messages  # order, party; personal: wire names masked in errors


def load(mappings_dir: Path) -> PostalMapping:
    base = mappings_dir / "postal"
    fields, time = fields_file(Fields, base / "fields.toml")
    return PostalMapping(
        fields=fields, time=time,
        statuses=tomlmap.load(Statuses, base / "statuses.toml", dotted=True),
        messages=Messages.load(base / "messages.toml", "order", "party"))
