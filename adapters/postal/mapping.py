"""The declarative part of the postal adapter: ``mappings/postal/*.toml`` loaded and checked
once, with errors naming the file and key to fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hub import tomlmap
from hub.errors import ConfigError

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


# Fields of these maps are named by table and key ("receipt.code"), as operators know them.
load_toml = tomlmap.read
_names = tomlmap.wire_names


def _table(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    return tomlmap.table(doc, key, where, field=key)


@dataclass(frozen=True)
class OrderStatus:
    outcome: str
    meaning: str


@dataclass(frozen=True)
class PostalMapping:
    time_format: str
    timezone: ZoneInfo
    order: dict[str, str]
    party: dict[str, str]
    reply: dict[str, str]
    tracking: dict[str, str]
    order_statuses: dict[str, OrderStatus]
    collection_states: dict[str, int]
    terminal_states: frozenset[int]


def load(mappings_dir: Path) -> PostalMapping:
    base = mappings_dir / "postal"
    fields = load_toml(base / "fields.toml")
    time_format, tz = tomlmap.wire_time(fields, "fields.toml")

    statuses_doc = load_toml(base / "statuses.toml")
    statuses: dict[str, OrderStatus] = {}
    for code, entry in _table(statuses_doc, "order_status", "statuses.toml").items():
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
    for code, value in _table(statuses_doc, "collection_state", "statuses.toml").items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4:
            raise ConfigError(
                f"statuses.toml: collection_state.{code} = {value!r}; the canonical states are "
                "0 not used, 1 registered, 2 collecting, 3 delivered, 4 cancelled",
                field=f"collection_state.{code}",
            )
        states[str(code)] = value
    terminal = _table(statuses_doc, "terminal", "statuses.toml").get("states", [3, 4])
    if not isinstance(terminal, list) or not all(isinstance(s, int) for s in terminal):
        raise ConfigError("statuses.toml: [terminal] states = [3, 4]", field="terminal.states")

    return PostalMapping(
        time_format=time_format,
        timezone=tz,
        order=_names(_table(fields, "order", "fields.toml"), ORDER_KEYS, "fields.toml [order]"),
        party=_names(_table(fields, "party", "fields.toml"), PARTY_KEYS, "fields.toml [party]"),
        reply=_names(_table(fields, "reply", "fields.toml"), REPLY_KEYS, "fields.toml [reply]"),
        tracking=_names(
            _table(fields, "tracking", "fields.toml"), TRACKING_KEYS, "fields.toml [tracking]"
        ),
        order_statuses=statuses,
        collection_states=states,
        terminal_states=frozenset(terminal),
    )
