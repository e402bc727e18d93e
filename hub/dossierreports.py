"""What a system reports of a dossier by calling the hub (a status change, a processing step),
in canonical form, and the envelope the hub emits for it.

The envelopes are the hub's (their source is the hub's id, since the hub signs them). They carry
no ``sequence``: the hub gives them the next numbers of each dossier's one sequence when it keeps
them (``IntakeService.accept_envelopes``), so a destination that applies a dossier's events in
order sees one order whatever door they came through. The system's own counter, when it sends
one, travels apart as the string extension ``systemsequence``. Their ``id`` is derived from the
report itself, so a system that pushes the same report twice (it did not see the hub's answer)
produces the same message, which the hub keeps once."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub import codes
from hub.envelope import SYSTEM_SEQUENCE, Envelope
from hub.errors import ValidationError
from hub.model import ProgressStep, StatusChange


@dataclass(frozen=True, slots=True)
class Report:
    event_type: str
    body: StatusChange | ProgressStep
    sequence: int | None  # the system's own counter, when it sends one
    procedure: str | None

    @property
    def dossier_code(self) -> str:
        return self.body.dossier_code

    @property
    def at(self) -> datetime:
        return self.body.at

    def order(self) -> int:
        """Where the system puts this report among its own: its counter when it sends one, else
        the report's time in milliseconds. Only part of the report's identity; the order
        destinations apply is the hub's sequence."""
        return self.sequence if self.sequence is not None else int(self.at.timestamp() * 1000)

    def envelope(self, source: str, ids: uuid.UUID, field: str = "dossier_code") -> Envelope:
        """The hub's envelope of this report; ``ids``: the namespace of its ids (uuid5 of the
        report), the system's own."""
        facts = json.dumps([self.event_type, self.body.model_dump(mode="json"), self.order(),
                            self.procedure], sort_keys=True, ensure_ascii=False)
        dossier = codes.parse_dossier(self.dossier_code, field)
        own = {SYSTEM_SEQUENCE: str(self.sequence)} if self.sequence is not None else None
        return Envelope.new(
            id=str(uuid.uuid5(ids, facts)), source=source, type=self.event_type,
            subject=dossier.value, data=self.body.model_dump(mode="json"),
            agency=dossier.agency.value, procedure=self.procedure, extensions=own,
        )


def batch(doc: Any, key: str, limit: int) -> tuple[list[Any], str]:
    """The reports of a body, one or a batch ``{key: [...]}`` of at most ``limit``, and the
    prefix naming their fields in errors (``danhSach[2].``)."""
    if isinstance(doc, dict) and key in doc:
        items = doc[key]
        if not isinstance(items, list) or not items:
            raise ValidationError("must be a non-empty list of updates", field=key)
        if len(items) > limit:
            raise ValidationError(
                f"holds {len(items)} updates; send at most {limit} per call", field=key,
                code="client.too_many",
            )
        return items, key
    return [doc], ""
