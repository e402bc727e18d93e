"""The portal's mapping files (``mappings/npsp/*.toml``), loaded and checked once.

Every name the translation writes on the wire comes from here, so a renamed field or a changed
code is a file edit. A mistake in the files is a ``ConfigError`` naming the file and key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapters.npsp.dates import WireDates
from hub.errors import ConfigError
from hub.model import ApplicantKind, Channel, Status

E = TypeVar("E", bound=IntEnum)

# The hub's names each table must map, no more and no fewer.
FIELDS: dict[str, frozenset[str]] = {
    "body": frozenset({
        "username", "password", "session", "agency", "service", "updating", "data",
        "lookup_code", "error_code", "message", "result",
    }),
    "calls": frozenset({"sync_dossiers", "report_progress", "lookup"}),
    "updating": frozenset({"insert", "update"}),
    "dossier": frozenset({
        "code", "procedure_code", "procedure_name", "field_code", "field_name", "channel",
        "applicant_name", "applicant_identity", "applicant_kind", "applicant_code",
        "received_at", "due_at", "returned_at", "resolved_at", "refused_at", "submitted_at",
        "status", "result_by_post", "handling_unit", "note", "attachments", "fees", "results",
        "identities", "paid_online",
    }),
    "attachment": frozenset({
        "id", "name", "component_code", "url", "digitized", "size", "sha256",
    }),
    "fee": frozenset({"name", "code", "method", "amount", "kind"}),
    "identity": frozenset({"kind", "number"}),
    "progress": frozenset({
        "dossier_code", "officer", "officer_title", "at", "department", "content", "status",
        "started_at", "due_at",
    }),
}
# Dates of a dossier a status change may fill (status.toml [status_dates]).
DOSSIER_DATES = frozenset(
    {"received_at", "due_at", "returned_at", "resolved_at", "refused_at", "submitted_at"}
)
ERROR_KINDS = frozenset(
    {"ok", "session_expired", "already_exists", "not_found", "retryable", "permanent"}
)


@dataclass(frozen=True, slots=True)
class ErrorRule:
    kind: str
    message: str


@dataclass(frozen=True)
class NpspMapping:
    body: dict[str, str]
    calls: dict[str, str]
    updating: dict[str, str]
    dossier: dict[str, str]
    attachment: dict[str, str]
    fee: dict[str, str]
    identity: dict[str, str]
    progress: dict[str, str]
    status_to_wire: dict[Status, str]
    status_from_wire: dict[str, Status]
    status_dates: dict[Status, str]
    channel_to_wire: dict[Channel, str]
    channel_from_wire: dict[str, Channel]
    kind_to_wire: dict[ApplicantKind, str]
    kind_from_wire: dict[str, ApplicantKind]
    identity_kinds: dict[str, str]
    true_value: str
    false_value: str
    dates: WireDates
    errors: dict[str, ErrorRule]
    unknown_error_kind: str

    def error_rule(self, code: str) -> ErrorRule:
        return self.errors.get(code) or ErrorRule(
            self.unknown_error_kind, f"error_code {code} is not listed in mappings/npsp/errors.toml"
        )


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
    """A table of hub name -> wire name with exactly the expected keys and unique values."""
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
        if wire in seen and key not in ("calls", "updating"):
            raise ConfigError(
                f"{wire!r} is also the wire name of {seen[wire]!r}; wire names must differ",
                field=f"{where} [{key}].{name}",
            )
        seen[wire] = name
    return dict(table)


def _codes(doc: dict[str, Any], key: str, enum: type[E], where: str) -> dict[str, E]:
    """A table of wire code -> enum member name that covers every member exactly once."""
    table = _table(doc, key, where)
    out: dict[str, E] = {}
    for code, name in table.items():
        try:
            member = enum[name]
        except (KeyError, TypeError):
            raise ConfigError(
                f"{name!r} is not one of {[m.name for m in enum]}", field=f"{where} [{key}].{code}"
            ) from None
        if member in out.values():
            raise ConfigError(
                f"{name} is mapped twice; each must have exactly one code",
                field=f"{where} [{key}].{code}",
            )
        out[str(code)] = member
    missing = [m.name for m in enum if m not in out.values()]
    if missing:
        raise ConfigError(f"lacks a code for {missing}", field=f"{where} [{key}]")
    return out


def _dates(doc: dict[str, Any], where: str) -> WireDates:
    table = _table(doc, "dates", where)
    fmt, zone = table.get("format"), table.get("timezone")
    if not isinstance(fmt, str) or "%" not in fmt:
        raise ConfigError(
            f"must be a strftime format like '%Y%m%d%H%M%S', got {fmt!r}",
            field=f"{where} [dates].format",
        )
    try:
        tz = ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{zone!r} is not a time zone name; use e.g. 'Asia/Ho_Chi_Minh'",
            field=f"{where} [dates].timezone",
        ) from None
    return WireDates(fmt, tz)


def _errors(doc: dict[str, Any], where: str) -> tuple[dict[str, ErrorRule], str]:
    unknown = doc.get("unknown", "permanent")
    if unknown not in ("retryable", "permanent"):
        raise ConfigError(
            f"must be 'retryable' or 'permanent', got {unknown!r}", field=f"{where} unknown"
        )
    rules: dict[str, ErrorRule] = {}
    for code, rule in _table(doc, "codes", where).items():
        at = f"{where} [codes.\"{code}\"]"
        if not isinstance(rule, dict) or rule.get("kind") not in ERROR_KINDS:
            raise ConfigError(f"needs kind = one of {sorted(ERROR_KINDS)}", field=f"{at}.kind")
        rules[str(code)] = ErrorRule(str(rule["kind"]), str(rule.get("message", "")))
    if not any(r.kind == "ok" for r in rules.values()):
        raise ConfigError("no code has kind = 'ok'; the portal's success is 0", field=where)
    return rules, str(unknown)


@lru_cache(maxsize=8)
def load_mapping(directory: Path) -> NpspMapping:
    fields_file, status_file = directory / "fields.toml", directory / "status.toml"
    codes_file, errors_file = directory / "codes.toml", directory / "errors.toml"
    fields, status, codes = _read(fields_file), _read(status_file), _read(codes_file)
    names = {key: _names(fields, key, fields_file.name) for key in FIELDS}

    status_from = _codes(status, "status", Status, status_file.name)
    status_dates: dict[Status, str] = {}
    for name, field in status.get("status_dates", {}).items():
        at = f"{status_file.name} [status_dates].{name}"
        if name not in Status.__members__:
            raise ConfigError(f"{name!r} is not a status name", field=at)
        if field not in DOSSIER_DATES:
            raise ConfigError(f"{field!r} is not one of {sorted(DOSSIER_DATES)}", field=at)
        status_dates[Status[name]] = field

    channel_from = _codes(codes, "channel", Channel, codes_file.name)
    kind_from = _codes(codes, "applicant_kind", ApplicantKind, codes_file.name)
    id_kinds = _table(codes, "identity_kind", codes_file.name)
    for key in ("citizen_id", "old_id_card"):
        if not isinstance(id_kinds.get(key), str):
            raise ConfigError(
                "needs a string code", field=f"{codes_file.name} [identity_kind].{key}"
            )
    booleans = _table(codes, "booleans", codes_file.name)
    true_value, false_value = booleans.get("true"), booleans.get("false")
    if not isinstance(true_value, str) or not isinstance(false_value, str) or (
        true_value == false_value
    ):
        raise ConfigError(
            "needs true and false as two different strings",
            field=f"{codes_file.name} [booleans]",
        )
    errors, unknown = _errors(_read(errors_file), errors_file.name)
    return NpspMapping(
        body=names["body"],
        calls=names["calls"],
        updating=names["updating"],
        dossier=names["dossier"],
        attachment=names["attachment"],
        fee=names["fee"],
        identity=names["identity"],
        progress=names["progress"],
        status_to_wire={v: k for k, v in status_from.items()},
        status_from_wire=status_from,
        status_dates=status_dates,
        channel_to_wire={v: k for k, v in channel_from.items()},
        channel_from_wire=channel_from,
        kind_to_wire={v: k for k, v in kind_from.items()},
        kind_from_wire=kind_from,
        identity_kinds={k: str(v) for k, v in id_kinds.items()},
        true_value=true_value,
        false_value=false_value,
        dates=_dates(codes, codes_file.name),
        errors=errors,
        unknown_error_kind=unknown,
    )
