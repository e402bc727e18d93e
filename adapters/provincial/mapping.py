"""The provincial mapping files (``mappings/provincial/*.toml``), loaded and checked once.

Vendors of provincial systems name fields and statuses differently, so every name written on
the wire comes from here. A mistake in the files is a ``ConfigError`` naming the file and key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapters.provincial.dates import WireDates
from hub.errors import ConfigError
from hub.model import ApplicantKind, Channel, Status

E = TypeVar("E", bound=IntEnum)

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


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"the mapping file {path} is missing; restore it from the repository",
            field=str(path),
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", field=str(path)) from None


def _table(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise ConfigError(f"the table [{key}] is missing; add it", field=f"{where} [{key}]")
    return value


def _names(doc: dict[str, Any], key: str, where: str) -> dict[str, str]:
    table = _table(doc, key, where)
    required = FIELDS[key]
    missing = sorted(required - table.keys())
    unknown = sorted(table.keys() - required)
    if missing:
        raise ConfigError(
            f"lacks {', '.join(missing)}; every one of {sorted(required)} needs a wire name",
            field=f"{where} [{key}]",
        )
    if unknown:
        raise ConfigError(
            f"has unknown keys {unknown}; the known keys are {sorted(required)}",
            field=f"{where} [{key}].{unknown[0]}",
        )
    seen: dict[str, str] = {}
    for name, wire in table.items():
        if not isinstance(wire, str) or not wire:
            raise ConfigError(
                f"must be a non-empty string, got {wire!r}", field=f"{where} [{key}].{name}"
            )
        if wire in seen:
            raise ConfigError(
                f"{wire!r} is also the wire name of {seen[wire]!r}; wire names must differ",
                field=f"{where} [{key}].{name}",
            )
        seen[wire] = name
    return dict(table)


def _member(enum: type[E], name: Any, where: str) -> E:
    try:
        return enum[name]
    except (KeyError, TypeError):
        raise ConfigError(f"{name!r} is not one of {[m.name for m in enum]}", field=where) from None


def _bijection(doc: dict[str, Any], key: str, enum: type[E], where: str) -> dict[str, E]:
    """Wire word -> member, covering every member exactly once."""
    out: dict[str, E] = {}
    for word, name in _table(doc, key, where).items():
        member = _member(enum, name, f"{where} [{key}].{word}")
        if member in out.values():
            raise ConfigError(f"{name} is mapped twice", field=f"{where} [{key}].{word}")
        out[word] = member
    missing = [m.name for m in enum if m not in out.values()]
    if missing:
        raise ConfigError(f"lacks a word for {missing}", field=f"{where} [{key}]")
    return out


def _statuses(doc: dict[str, Any], where: str) -> tuple[dict[str, Status], dict[Status, str]]:
    to_national = {
        word: _member(Status, name, f"{where} [to_national].{word}")
        for word, name in _table(doc, "to_national", where).items()
    }
    from_national: dict[Status, str] = {}
    for name, word in _table(doc, "from_national", where).items():
        at = f"{where} [from_national].{name}"
        status = _member(Status, name, at)
        if to_national.get(word) is not status:
            raise ConfigError(
                f"{word!r} must be a word of [to_national] that means {name}, so what the hub "
                "writes reads back the same",
                field=at,
            )
        from_national[status] = word
    missing = [s.name for s in Status if s not in from_national]
    if missing:
        raise ConfigError(
            f"lacks a word for {missing}; the hub must be able to deliver a dossier in any "
            "status",
            field=f"{where} [from_national]",
        )
    return to_national, from_national


def _dates(doc: dict[str, Any], where: str) -> WireDates:
    table = _table(doc, "dates", where)
    for key in ("datetime", "date"):
        if not isinstance(table.get(key), str) or "%" not in table[key]:
            raise ConfigError(
                f"must be a strftime format like '%d/%m/%Y', got {table.get(key)!r}",
                field=f"{where} [dates].{key}",
            )
    try:
        zone = ZoneInfo(str(table.get("timezone")))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{table.get('timezone')!r} is not a time zone name; use e.g. 'Asia/Ho_Chi_Minh'",
            field=f"{where} [dates].timezone",
        ) from None
    return WireDates(table["datetime"], table["date"], zone)


@lru_cache(maxsize=8)
def load_mapping(directory: Path) -> ProvincialMapping:
    fields_file, status_file, codes_file = (
        directory / "fields.toml", directory / "status.toml", directory / "codes.toml"
    )
    fields, codes = _read(fields_file), _read(codes_file)
    names = {key: _names(fields, key, fields_file.name) for key in FIELDS}
    to_national, from_national = _statuses(_read(status_file), status_file.name)
    channels = _bijection(codes, "channel", Channel, codes_file.name)
    kinds = _bijection(codes, "applicant_kind", ApplicantKind, codes_file.name)
    update_kinds = _table(codes, "update_kind", codes_file.name)
    for key in ("status", "progress"):
        if not isinstance(update_kinds.get(key), str):
            raise ConfigError("needs a string", field=f"{codes_file.name} [update_kind].{key}")
    if update_kinds["status"] == update_kinds["progress"]:
        raise ConfigError("status and progress need different words",
                          field=f"{codes_file.name} [update_kind]")
    reply = _table(codes, "reply", codes_file.name)
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
        update_kinds={"status": update_kinds["status"], "progress": update_kinds["progress"]},
        reply_ok=reply["ok"],
        dates=_dates(codes, codes_file.name),
    )
