"""The declarative part of the postal adapter: ``mappings/postal/*.toml`` loaded and checked
once, with errors naming the file and key to fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub import tomlmap
from hub.errors import ConfigError
from hub.stateful import WireTime, wire_names, wire_time

OUTCOMES = ("accepted", "duplicate", "waybill_used", "rejected", "retry")
ORDER_KEYS = (
    "customer_code",
    "waybill",
    "order_number",
    "cod_amount",
    "sender",
    "receiver",
    "description",
)
PARTY_KEYS = ("name", "address", "phone", "province", "district", "email")
REPLY_KEYS = ("status", "message", "data")
TRACKING_KEYS = (
    "order_number",
    "page",
    "page_size",
    "total_pages",
    "items",
    "waybill",
    "state",
    "time",
    "note",
)


def _table(doc: dict[str, Any], key: str) -> dict[str, Any]:
    # Named by table and key ("order_status.101"), as operators know them.
    return tomlmap.table(doc, key, "statuses.toml", field=key)


@dataclass(frozen=True)
class OrderStatus:
    outcome: str
    meaning: str


@dataclass(frozen=True)
class PostalMapping:
    time: WireTime
    order: dict[str, str]
    party: dict[str, str]
    reply: dict[str, str]
    tracking: dict[str, str]
    order_statuses: dict[str, OrderStatus]
    collection_states: dict[str, int]
    terminal_states: frozenset[int]


def load(mappings_dir: Path) -> PostalMapping:
    base = mappings_dir / "postal"
    fields = tomlmap.read(base / "fields.toml")
    statuses_doc = tomlmap.read(base / "statuses.toml")
    statuses: dict[str, OrderStatus] = {}
    for code, entry in _table(statuses_doc, "order_status").items():
        if not isinstance(entry, dict) or entry.get("outcome") not in OUTCOMES:
            raise ConfigError(
                f"statuses.toml: order_status.{code} needs outcome = one of {', '.join(OUTCOMES)}",
                field=f"order_status.{code}",
            )
        statuses[str(code)] = OrderStatus(entry["outcome"], str(entry.get("meaning", "")))
    if not any(s.outcome == "accepted" for s in statuses.values()):
        raise ConfigError(
            'statuses.toml: no order_status has outcome = "accepted"', field="order_status"
        )
    states: dict[str, int] = {}
    for code, value in _table(statuses_doc, "collection_state").items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4:
            raise ConfigError(
                f"statuses.toml: collection_state.{code} = {value!r}; the canonical states are "
                "0 not used, 1 registered, 2 collecting, 3 delivered, 4 cancelled",
                field=f"collection_state.{code}",
            )
        states[str(code)] = value
    terminal = _table(statuses_doc, "terminal").get("states", [3, 4])
    if not isinstance(terminal, list) or not all(isinstance(s, int) for s in terminal):
        raise ConfigError("statuses.toml: [terminal] states = [3, 4]", field="terminal.states")

    return PostalMapping(
        time=wire_time(fields, "the postal service"),
        order=wire_names(fields, "order", ORDER_KEYS),
        party=wire_names(fields, "party", PARTY_KEYS),
        reply=wire_names(fields, "reply", REPLY_KEYS),
        tracking=wire_names(fields, "tracking", TRACKING_KEYS),
        order_statuses=statuses,
        collection_states=states,
        terminal_states=frozenset(terminal),
    )
