"""What a province pushes to ``POST /v1/callbacks/provincial``, in its own format, turned into
the hub's envelopes of dossier reports (``hub.dossierreports``). The body is one update or a
batch ``{"danhSach": [...]}`` (names from the mapping); a bad one is refused whole, nothing
half-taken, naming the province's field (``danhSach[2].thoiGian``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping

from adapters.provincial.client import NAME
from adapters.provincial.config import ProvincialConfig
from adapters.provincial.mapping import ProvincialMapping, load_mapping
from adapters.provincial.translate import wire_to_update
from hub.adapters import AdapterContext
from hub.contracts import Contract, load_contract
from hub.dossierreports import batch
from hub.envelope import Envelope
from hub.errors import ValidationError
from hub.jsonbody import MAX_DEPTH, parse_json

Callback = Callable[[bytes, Mapping[str, str]], list[Envelope]]
# Namespace of the ids of envelopes made of provincial updates (uuid5 of the update).
_IDS = uuid.UUID("6f1d3c2e-7a4b-5c8d-9e0f-1a2b3c4d5e6f")


def parse_updates(
    body: bytes, m: ProvincialMapping, contract: Contract, hub_id: str, limit: int = 500,
    max_depth: int = MAX_DEPTH,
) -> list[Envelope]:
    doc = parse_json(body, max_depth=max_depth)
    items, key = batch(doc, m.update["items"], limit)
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
        envelopes.append(update.envelope(hub_id, _IDS, where + "dossier_code"))
    return envelopes


def make_callback(ctx: AdapterContext) -> Callback:
    settings = ctx.settings
    config = ProvincialConfig.shipped_or_context(ctx, NAME)
    mapping = load_mapping(settings.mappings_dir / NAME)
    contract = load_contract(settings.schemas_dir / NAME)
    hub_id: str = settings.hub_id

    def callback(body: bytes, headers: Mapping[str, str]) -> list[Envelope]:
        return parse_updates(body, mapping, contract, hub_id, config.max_updates,
                             settings.max_json_depth)

    return callback
