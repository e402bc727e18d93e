"""The provincial mapping files (``mappings/provincial/*.toml``), loaded and checked once.

Vendors of provincial systems name fields and statuses differently, so every name written on
the wire comes from here. A mistake in the files is a ``ConfigError`` naming the file and key.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from hub import tomlmap
from hub.errors import ConfigError
from hub.model import ApplicantKind, Channel, Status
from hub.wiredates import WireDates

# The hub's names each table of fields.toml must map, no more and no fewer.
FIELDS: dict[str, frozenset[str]] = {
    "dossier": frozenset({
        "code", "procedure_code", "procedure_name", "field_code", "field_name", "agency_code",
        "applicant", "channel", "status", "submitted_at", "received_at", "due_at",
        "resolved_at", "returned_at", "refused_at", "result_by_post", "handling_unit", "note",
        "attachments", "fees", "paid_online",
    }),
    "applicant": frozenset({
        "identity_number", "name", "birth_date", "kind", "address", "phone", "email",
    }),
    "attachment": frozenset({
        "id", "name", "url", "size", "sha256", "component_code", "digitized",
    }),
    "fee": frozenset({"code", "name", "amount", "kind", "method"}),
    "update": frozenset({"items", "kind"}),
    "status_change": frozenset({
        "dossier_code", "procedure_code", "status", "previous_status", "at", "officer", "note",
        "sequence",
    }),
    "progress": frozenset({
        "dossier_code", "procedure_code", "officer", "officer_title", "department", "content",
        "status", "at", "started_at", "due_at", "sequence",
    }),
    "reply": frozenset({"code", "message", "field"}),
}


@dataclass(frozen=True)
class ProvincialMapping:
    dossier: dict[str, str]
    applicant: dict[str, str]
    attachment: dict[str, str]
    fee: dict[str, str]
    update: dict[str, str]
    status_change: dict[str, str]
    progress: dict[str, str]
    reply: dict[str, str]
    status_from_wire: dict[str, Status]  # many words may share a status
    status_to_wire: dict[Status, str]
    channel_from_wire: dict[str, Channel]
    channel_to_wire: dict[Channel, str]
    kind_from_wire: dict[str, ApplicantKind]
    kind_to_wire: dict[ApplicantKind, str]
    update_kinds: dict[str, str]  # "status" / "progress" -> the province's word
    reply_ok: str
    dates: WireDates


@lru_cache(maxsize=8)
def load_mapping(directory: Path) -> ProvincialMapping:
    fields_file, status_file, codes_file = (
        directory / "fields.toml", directory / "status.toml", directory / "codes.toml"
    )
    fields, codes = tomlmap.read(fields_file), tomlmap.read(codes_file)
    names = {key: tomlmap.exact_names(fields, key, fields_file.name, FIELDS[key]) for key in FIELDS}
    to_national, from_national = tomlmap.words(tomlmap.read(status_file), "to_national",
                                                "from_national", Status, status_file.name)
    channels = tomlmap.bijection(codes, "channel", Channel, codes_file.name, noun="word")
    kinds = tomlmap.bijection(codes, "applicant_kind", ApplicantKind, codes_file.name, noun="word")
    update_kinds = tomlmap.distinct_words(codes, "update_kind", ("status", "progress"),
                                          codes_file.name)
    reply = tomlmap.table(codes, "reply", codes_file.name)
    if not isinstance(reply.get("ok"), str):
        raise ConfigError("needs the success code as a string", field=f"{codes_file.name} "
                          "[reply].ok")
    return ProvincialMapping(
        dossier=names["dossier"],
        applicant=names["applicant"],
        attachment=names["attachment"],
        fee=names["fee"],
        update=names["update"],
        status_change=names["status_change"],
        progress=names["progress"],
        reply=names["reply"],
        status_from_wire=to_national,
        status_to_wire=from_national,
        channel_from_wire=channels,
        channel_to_wire={v: k for k, v in channels.items()},
        kind_from_wire=kinds,
        kind_to_wire={v: k for k, v in kinds.items()},
        update_kinds=update_kinds,
        reply_ok=reply["ok"],
        dates=tomlmap.wire_dates(codes, codes_file.name, time="datetime", date="date"),
    )
