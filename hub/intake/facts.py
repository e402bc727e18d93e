"""What the hub needs to know of a canonical event body to route and record it: its dossier,
agency, procedure and time, and the summary its timeline entry keeps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from hub import codes
from hub.model import Dossier

# Fields copied into a timeline entry's summary; personal data (the applicant, the payer) never.
_SUMMARY_FIELDS = (
    "status", "previous_status", "procedure_code", "agency_code", "channel", "officer",
    "department", "content", "reference", "transaction_id", "paid", "waybill", "state",
    "direction",
)


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What the hub needs to know of an event body to route and record it."""

    dossier_code: str | None
    agency: str | None
    procedure: str | None
    at: datetime | None
    summary: dict[str, Any]


def describe(model: BaseModel, payload: Mapping[str, Any] | None = None) -> EventFacts:
    """Dossier, agency, procedure and time of any canonical event body. ``payload`` is the
    model's JSON form (``model_dump(mode="json")``) when the caller has it already."""
    data = model.model_dump(mode="json") if payload is None else payload
    # Fields are read from the JSON form (enums as numbers, decimals as strings, what the
    # summary keeps) and from the model's __dict__: a missing attribute of a pydantic model is
    # an exception caught, ten times per request.
    fields = model.__dict__
    dossier = data.get("code") if isinstance(model, Dossier) else data.get("dossier_code")
    agency = data.get("agency_code")
    if agency is None and dossier is not None:
        agency = codes.parse_dossier(dossier).agency.value
    at = fields.get("at") or fields.get("submitted_at")
    summary = {name: data[name] for name in _SUMMARY_FIELDS if data.get(name) is not None}
    return EventFacts(dossier, agency, data.get("procedure_code"), at, summary)
