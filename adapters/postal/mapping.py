"""The declarative part of the postal adapter: ``mappings/postal/*.toml`` loaded and checked
once, with errors naming the file and key to fix."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"mapping file {path} is missing", field=path.name) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", field=path.name) from None


def _table(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise ConfigError(f"{where} needs a [{key}] table", field=key)
    return value


def _names(table: dict[str, Any], keys: tuple[str, ...], where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in keys:
        value = table.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f'{where} needs {key} = "<wire field name>"', field=key)
        out[key] = value
    return out


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
    time_format = fields.get("time_format", "%Y%m%d%H%M%S")
    if not isinstance(time_format, str) or "%" not in time_format:
        raise ConfigError("fields.toml: time_format must be a strftime format", field="time_format")
    tz_name = fields.get("timezone", "Asia/Ho_Chi_Minh")
    try:
        tz = ZoneInfo(str(tz_name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"fields.toml: {tz_name!r} is not an IANA time zone", field="timezone"
        ) from None

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
