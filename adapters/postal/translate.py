"""Canonical model <-> postal service messages. Pure functions driven by the mapping; they
raise hub.errors.ValidationError naming the field."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapters.postal.config import PostalConfig
from adapters.postal.mapping import PostalMapping
from hub.model import Party, PostalPickup
from hub.stateful import decoded, whole_dong


def order_number(pickup: PostalPickup, cfg: PostalConfig) -> str:
    return cfg.order_number.format(dossier_code=pickup.dossier_code, direction=pickup.direction)


def _party(party: Party, mapping: PostalMapping) -> dict[str, Any]:
    return mapping.messages["party"].fill(party.model_dump())


def order_message(
    pickup: PostalPickup, waybill: str, cfg: PostalConfig, mapping: PostalMapping
) -> dict[str, Any]:
    """The create-order request for ``pickup`` on ``waybill`` (messages.toml [order])."""
    purpose = "nhan ho so" if pickup.direction == "pickup" else "tra ket qua"
    return mapping.messages["order"].fill({
        "customer_code": cfg.customer_code, "waybill": waybill,
        "order_number": order_number(pickup, cfg),
        "cod_amount": whole_dong(pickup.cod_amount, "cod_amount"),
        "sender": _party(pickup.sender, mapping), "receiver": _party(pickup.receiver, mapping),
        "description": pickup.description or f"Ho so {pickup.dossier_code} ({purpose})",
    })


@dataclass(frozen=True)
class TrackItem:
    """One tracking entry as the postal service reports it, state already canonical."""

    waybill: str
    state: int
    at: datetime
    note: str | None
    order_number: str | None = None


def state_of(raw: Any, mapping: PostalMapping, field: str) -> int:
    return decoded(mapping.statuses.collection_state, raw, field, "collection state",
                   "mappings/postal/statuses.toml [collection_state]")


def track_item(
    doc: dict[str, Any], mapping: PostalMapping, where: str = "", order: str | None = None
) -> TrackItem:
    t = mapping.fields.tracking
    prefix = f"{where}." if where else ""
    note = doc.get(t.note)
    return TrackItem(
        waybill=str(doc[t.waybill]),
        state=state_of(doc[t.state], mapping, prefix + t.state),
        at=mapping.time.read(doc[t.time], prefix + t.time),
        note=None if note in (None, "") else str(note),
        order_number=order if order is not None else _opt(doc.get(t.order_number)),
    )


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)
