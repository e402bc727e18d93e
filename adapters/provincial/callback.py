"""What a province pushes to ``POST /v1/callbacks/provincial``, in its own format, turned into
canonical envelopes (``vn.gov.dossier.status-changed`` / ``vn.gov.dossier.progress-reported``).

The body is one update or a batch ``{"danhSach": [...]}`` (names from the mapping). A bad body
raises ``hub.errors.ValidationError`` (or ``ClientError`` for unparseable JSON) naming the
province's field, e.g. ``danhSach[2].thoiGian``: the whole batch is refused, nothing half-taken.

The envelopes are emitted by the hub (source = the hub's id, since the hub signs them). They
carry no ``sequence``: the hub gives them the next numbers of each dossier's one sequence when
it keeps them (``IntakeService.accept_envelopes``), the same numbering as the dossier's REST and
SOAP events, so a destination that applies a dossier's events in order sees one order. The
province's own counter (``soThuTu``), when sent, travels apart as the string extension
``systemsequence``. Their ``id`` is derived from the update itself (with the province's counter,
or else the update's time in milliseconds), so a province that pushes the same update twice (it
did not see the hub's answer) produces the same message, which the hub keeps once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from adapters.provincial.client import NAME
from adapters.provincial.config import ProvincialConfig
from adapters.provincial.mapping import ProvincialMapping, load_mapping
from adapters.provincial.translate import Update, wire_to_update
from hub import codes
from hub.adapters import AdapterContext, load_config
from hub.contracts import Contract, load_contract
from hub.envelope import SYSTEM_SEQUENCE, Envelope
from hub.errors import ValidationError
from hub.jsonbody import MAX_DEPTH, parse_json

Callback = Callable[[bytes, Mapping[str, str]], list[Envelope]]
# Namespace of the ids of envelopes made of provincial updates (uuid5 of the update).
_IDS = uuid.UUID("6f1d3c2e-7a4b-5c8d-9e0f-1a2b3c4d5e6f")


def _items(doc: Any, m: ProvincialMapping, limit: int) -> tuple[list[Any], str]:
    """The updates of a body and the prefix naming their fields in errors."""
    key = m.update["items"]
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


def update_order(update: Update) -> int:
    """Where the province puts this update among its own: its counter when it sends one, else
    the update's time in milliseconds. Only part of the update's identity (``message_id``); the
    order destinations apply is the hub's sequence."""
    if update.sequence is not None:
        return update.sequence
    return int(update.at.timestamp() * 1000)


def message_id(update: Update, order: int) -> str:
    """The same update always gets the same id."""
    facts = json.dumps([update.event_type, update.body.model_dump(mode="json"), order,
                        update.procedure], sort_keys=True, ensure_ascii=False)
    return str(uuid.uuid5(_IDS, facts))


def parse_updates(
    body: bytes, m: ProvincialMapping, contract: Contract, hub_id: str, limit: int = 500,
    max_depth: int = MAX_DEPTH,
) -> list[Envelope]:
    doc = parse_json(body, max_depth=max_depth)
    items, key = _items(doc, m, limit)
    kinds = {m.update_kinds["status"]: "status-change", m.update_kinds["progress"]: "progress"}
    envelopes = []
    for n, item in enumerate(items):
        where = f"{key}[{n}]." if key else ""
        update = wire_to_update(item, m, where)
        try:
            contract.validate(kinds[item[m.update["kind"]]], item)
        except ValidationError as exc:
            inner = "" if exc.field in (None, "(body)") else exc.field
            raise ValidationError(exc.message, code=exc.code,
                                  field=(where + inner).rstrip(".") or None) from None
        dossier = codes.parse_dossier(update.dossier_code, where + "dossier_code")
        own = ({SYSTEM_SEQUENCE: str(update.sequence)} if update.sequence is not None else None)
        envelopes.append(Envelope.new(
            id=message_id(update, update_order(update)),
            source=hub_id,
            type=update.event_type,
            subject=dossier.value,
            data=update.body.model_dump(mode="json"),
            agency=dossier.agency.value,
            procedure=update.procedure,
            extensions=own,
        ))
    return envelopes


def make_callback(ctx: AdapterContext) -> Callback:
    settings = ctx.settings
    config = ProvincialConfig.from_mapping(ctx.config or load_config(settings.mappings_dir, NAME))
    mapping = load_mapping(settings.mappings_dir / NAME)
    contract = load_contract(settings.schemas_dir / NAME)
    hub_id: str = settings.hub_id

    def callback(body: bytes, headers: Mapping[str, str]) -> list[Envelope]:
        return parse_updates(body, mapping, contract, hub_id, config.max_updates,
                             settings.max_json_depth)

    return callback
