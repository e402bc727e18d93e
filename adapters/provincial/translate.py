"""Canonical model <-> the provincial system's JSON, both ways, driven by
``mappings/provincial``.

Plain functions: no I/O. Errors on the way in are ``hub.errors.ValidationError`` naming the
province's field as the province wrote it (``danhSach[1].thoiGian``, ``chuHoSo.soDinhDanh``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from adapters.provincial.mapping import ProvincialMapping
from hub import codes
from hub.errors import CodeError, HubError, ValidationError
from hub.model import (
    Dossier,
    ProgressStep,
    Status,
    StatusChange,
    check_transition,
    validate_model,
)

Doc = dict[str, Any]
STATUS_CHANGED = "vn.gov.dossier.status-changed"
PROGRESS_REPORTED = "vn.gov.dossier.progress-reported"


# ---------------------------------------------------------------- canonical -> province


def _put(out: Doc, name: str, value: Any) -> None:
    if value is not None:
        out[name] = value


def _amount(value: Decimal) -> int | float:
    # Dong have no subunit: amounts are whole numbers on the wire.
    return int(value) if value == value.to_integral_value() else float(value)


def _when(value: datetime | None, m: ProvincialMapping) -> str | None:
    return None if value is None else m.dates.write(value)


def dossier_to_wire(d: Dossier, m: ProvincialMapping) -> Doc:
    f, ap, at, fe = m.dossier, m.applicant, m.attachment, m.fee
    applicant: Doc = {
        ap["identity_number"]: d.applicant.identity_number,
        ap["name"]: d.applicant.name,
        ap["kind"]: m.kind_to_wire[d.applicant.kind],
    }
    if d.applicant.birth_date is not None:
        applicant[ap["birth_date"]] = m.dates.write_date(d.applicant.birth_date)
    _put(applicant, ap["address"], d.applicant.address)
    _put(applicant, ap["phone"], d.applicant.phone)
    _put(applicant, ap["email"], d.applicant.email)
    out: Doc = {
        f["code"]: d.code,
        f["procedure_code"]: d.procedure_code,
        f["agency_code"]: d.agency_code,
        f["applicant"]: applicant,
        f["channel"]: m.channel_to_wire[d.channel],
        f["status"]: m.status_to_wire[d.status],
        f["result_by_post"]: d.result_by_post,
        f["paid_online"]: d.paid_online,
        f["attachments"]: [
            {
                at["id"]: a.id, at["name"]: a.name, at["url"]: a.url, at["size"]: a.size,
                at["sha256"]: a.sha256, at["digitized"]: a.digitized,
                **({at["component_code"]: a.component_code} if a.component_code else {}),
            }
            for a in d.attachments
        ],
        f["fees"]: [
            {
                fe["code"]: fee.code, fe["name"]: fee.name, fe["amount"]: _amount(fee.amount),
                fe["kind"]: fee.kind,
                **({fe["method"]: fee.method} if fee.method is not None else {}),
            }
            for fee in d.fees
        ],
    }
    _put(out, f["procedure_name"], d.procedure_name)
    _put(out, f["field_code"], d.field_code)
    _put(out, f["field_name"], d.field_name)
    _put(out, f["handling_unit"], d.handling_unit)
    _put(out, f["note"], d.note)
    for name in ("submitted_at", "received_at", "due_at", "resolved_at", "returned_at",
                 "refused_at"):
        _put(out, f[name], _when(getattr(d, name), m))
    return out


# ---------------------------------------------------------------- province -> canonical


def status_from_wire(word: Any, m: ProvincialMapping, field: str) -> Status:
    status = m.status_from_wire.get(word) if isinstance(word, str) else None
    if status is None:
        raise ValidationError(
            f"{str(word)[:40]!r} is not a status of this province; expected one of "
            f"{sorted(m.status_from_wire)} (mappings/provincial/status.toml)",
            field=field,
        )
    return status


def _required(doc: Mapping[str, Any], name: str, where: str) -> Any:
    value = doc.get(name)
    if value is None or value == "":
        raise ValidationError("is required but missing", field=where + name)
    return value


def _code(doc: Mapping[str, Any], name: str, where: str) -> Any:
    """A required code or identity number as the province wrote it, without the blanks around
    it that its system may leave: the canonical model takes a code exactly as the contracts
    write it, with none."""
    value = _required(doc, name, where)
    return value.strip() if isinstance(value, str) else value


def _optional_str(doc: Mapping[str, Any], name: str, where: str) -> str | None:
    value = doc.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationError(f"must be a string, got {type(value).__name__}", field=where + name)
    return value


def _optional_time(doc: Mapping[str, Any], name: str, m: ProvincialMapping,
                   where: str) -> datetime | None:
    value = doc.get(name)
    return None if value in (None, "") else m.dates.read(value, where + name)


def _word(table: Mapping[str, Any], value: Any, field: str, what: str) -> Any:
    if not isinstance(value, str) or value not in table:
        raise ValidationError(
            f"{str(value)[:40]!r} is not a {what}; expected one of {sorted(table)}", field=field
        )
    return table[value]


def _sequence(doc: Mapping[str, Any], name: str, where: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"must be a non-negative integer, got {str(value)[:20]!r}",
                              field=where + name)
    return value


def _validated(model: type[Any], data: Doc, rename: Callable[[str], str]) -> Any:
    """Validate against the canonical model, naming the province's field on failure."""
    try:
        return validate_model(model, data)
    except HubError as exc:
        raise ValidationError(exc.message, code=exc.code,
                              field=rename(exc.field) if exc.field else None) from None


@dataclass(frozen=True, slots=True)
class Update:
    """One update pushed by the province, in canonical form."""

    event_type: str
    body: StatusChange | ProgressStep
    sequence: int | None  # the province's own counter, when it sends one
    procedure: str | None

    @property
    def dossier_code(self) -> str:
        return self.body.dossier_code

    @property
    def at(self) -> datetime:
        return self.body.at


def _procedure(doc: Mapping[str, Any], name: str, where: str) -> str | None:
    value = _optional_str(doc, name, where)
    if value is None:
        return None
    try:
        return codes.parse_procedure(value, where + name, strip=True).value
    except CodeError as exc:
        raise ValidationError(exc.message, code=exc.code, field=where + name) from None


def wire_to_status_change(doc: Mapping[str, Any], m: ProvincialMapping, where: str = "") -> Update:
    f = m.status_change
    status = status_from_wire(_required(doc, f["status"], where), m, where + f["status"])
    previous_word = doc.get(f["previous_status"])
    previous = (None if previous_word in (None, "")
                else status_from_wire(previous_word, m, where + f["previous_status"]))
    if previous is not None:
        try:
            check_transition(previous, status, where + f["status"])
        except HubError as exc:
            raise ValidationError(exc.message, code=exc.code, field=exc.field) from None
    data: Doc = {
        "dossier_code": _code(doc, f["dossier_code"], where),
        "status": status,
        "previous_status": previous,
        "at": m.dates.read(_required(doc, f["at"], where), where + f["at"]),
        "officer": _optional_str(doc, f["officer"], where),
        "note": _optional_str(doc, f["note"], where),
    }
    body = _validated(StatusChange, data, lambda field: where + f.get(field.split(".")[0], field))
    return Update(STATUS_CHANGED, body, _sequence(doc, f["sequence"], where),
                  _procedure(doc, f["procedure_code"], where))


def wire_to_progress(doc: Mapping[str, Any], m: ProvincialMapping, where: str = "") -> Update:
    f = m.progress
    data: Doc = {
        "dossier_code": _code(doc, f["dossier_code"], where),
        "officer": _required(doc, f["officer"], where),
        "officer_title": _optional_str(doc, f["officer_title"], where),
        "department": _optional_str(doc, f["department"], where),
        "content": _required(doc, f["content"], where),
        "status": status_from_wire(_required(doc, f["status"], where), m, where + f["status"]),
        "at": m.dates.read(_required(doc, f["at"], where), where + f["at"]),
        "started_at": _optional_time(doc, f["started_at"], m, where),
        "due_at": _optional_time(doc, f["due_at"], m, where),
    }
    body = _validated(ProgressStep, data, lambda field: where + f.get(field.split(".")[0], field))
    return Update(PROGRESS_REPORTED, body, _sequence(doc, f["sequence"], where),
                  _procedure(doc, f["procedure_code"], where))


def wire_to_update(doc: Any, m: ProvincialMapping, where: str = "") -> Update:
    """A status change or a progress step, by the item's kind field."""
    if not isinstance(doc, dict):
        raise ValidationError("must be a JSON object", field=where.rstrip(".") or None)
    kind_field = m.update["kind"]
    kind = doc.get(kind_field)
    if kind == m.update_kinds["status"]:
        return wire_to_status_change(doc, m, where)
    if kind == m.update_kinds["progress"]:
        return wire_to_progress(doc, m, where)
    raise ValidationError(
        f"{str(kind)[:40]!r} is not a kind of update; expected "
        f"{m.update_kinds['status']!r} (status change) or {m.update_kinds['progress']!r} "
        "(processing step)",
        field=where + kind_field,
    )

