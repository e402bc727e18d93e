"""Canonical model <-> the portal's records, both ways, driven by ``mappings/npsp``.

Plain functions: no I/O. Errors on the way in (a record from the portal) are
``hub.errors.ValidationError`` naming the portal's field (``TaiLieuNop[0].MaBamTep``); the way
out cannot fail on valid canonical data except through a broken mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.npsp.mapping import NpspMapping
from hub import codes
from hub.errors import CodeError, HubError, ValidationError
from hub.model import (
    Dossier,
    ProgressStep,
    Status,
    StatusChange,
    validate_model,
)

Record = dict[str, Any]


# ---------------------------------------------------------------- canonical -> portal


def status_to_wire(status: Status, m: NpspMapping) -> str:
    return m.status_to_wire[status]


def _bool(value: bool, m: NpspMapping) -> str:
    return m.true_value if value else m.false_value


def _amount(value: Decimal) -> int | float:
    # Dong have no subunit: amounts are whole numbers on the wire.
    return int(value) if value == value.to_integral_value() else float(value)


def _put(out: Record, name: str, value: Any) -> None:
    if value is not None:
        out[name] = value


def dossier_to_record(d: Dossier, m: NpspMapping) -> Record:
    f, a, p, i = m.dossier, m.attachment, m.fee, m.identity
    when = m.dates.write
    identity = d.applicant.identity_number
    id_kind = m.identity_kinds["citizen_id" if len(identity) == 12 else "old_id_card"]
    out: Record = {
        f["code"]: d.code,
        f["procedure_code"]: d.procedure_code,
        f["channel"]: m.channel_to_wire[d.channel],
        f["applicant_name"]: d.applicant.name,
        f["applicant_identity"]: identity,
        f["applicant_kind"]: m.kind_to_wire[d.applicant.kind],
        # The portal's subject code: the applicant's own identifier.
        f["applicant_code"]: identity,
        f["status"]: status_to_wire(d.status, m),
        f["result_by_post"]: _bool(d.result_by_post, m),
        f["paid_online"]: _bool(d.paid_online, m),
    }
    _put(out, f["procedure_name"], d.procedure_name)
    _put(out, f["field_code"], d.field_code)
    _put(out, f["field_name"], d.field_name)
    _put(out, f["handling_unit"], d.handling_unit)
    _put(out, f["note"], d.note)
    for name in ("submitted_at", "received_at", "due_at", "resolved_at", "returned_at",
                 "refused_at"):
        value: datetime | None = getattr(d, name)
        if value is not None:
            out[f[name]] = when(value)
    attachments = []
    for att in d.attachments:
        doc: Record = {
            a["id"]: att.id,
            a["name"]: att.name,
            a["url"]: att.url,
            a["digitized"]: _bool(att.digitized, m),
            a["size"]: att.size,
            a["sha256"]: att.sha256,
        }
        _put(doc, a["component_code"], att.component_code)
        attachments.append(doc)
    out[f["attachments"]] = attachments
    fees = []
    for fee in d.fees:
        line: Record = {
            p["code"]: fee.code,
            p["name"]: fee.name,
            p["amount"]: _amount(fee.amount),
            p["kind"]: str(fee.kind),
        }
        _put(line, p["method"], None if fee.method is None else str(fee.method))
        fees.append(line)
    out[f["fees"]] = fees
    # The hub carries no result documents of its own; the province reports them to the portal.
    out[f["results"]] = []
    out[f["identities"]] = [{i["kind"]: id_kind, i["number"]: identity}]
    return out


def progress_to_record(step: ProgressStep, m: NpspMapping) -> Record:
    f, when = m.progress, m.dates.write
    out: Record = {
        f["dossier_code"]: step.dossier_code,
        f["officer"]: step.officer,
        f["at"]: when(step.at),
        f["content"]: step.content,
        f["status"]: status_to_wire(step.status, m),
    }
    _put(out, f["officer_title"], step.officer_title)
    _put(out, f["department"], step.department)
    if step.started_at is not None:
        out[f["started_at"]] = when(step.started_at)
    if step.due_at is not None:
        out[f["due_at"]] = when(step.due_at)
    return out


def apply_status(record: Mapping[str, Any], change: StatusChange, m: NpspMapping) -> Record:
    """The portal's record of a dossier with a status change applied: the new TrangThaiHoSo,
    the date that status stands for (received, refused, resolved, returned) and the note.
    Keys the hub does not map are left out, so what is sent is exactly the contract."""
    known = set(m.dossier.values())
    out = {k: v for k, v in record.items() if k in known}
    out[m.dossier["status"]] = status_to_wire(change.status, m)
    date_field = m.status_dates.get(change.status)
    if date_field is not None:
        out[m.dossier[date_field]] = m.dates.write(change.at)
    if change.note:
        out[m.dossier["note"]] = change.note
    return out


# ---------------------------------------------------------------- portal -> canonical


def _code_text(value: Any, field: str) -> str:
    # The portal writes its codes as strings; some of its replies carry numbers.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValidationError(f"must be a code (a string of digits), got {value!r:.40}",
                              field=field)
    return str(value).strip()


def status_from_wire(value: Any, m: NpspMapping, field: str = "TrangThaiHoSo") -> Status:
    code = _code_text(value, field)
    status = m.status_from_wire.get(code)
    if status is None:
        known = sorted(m.status_from_wire, key=int)
        raise ValidationError(
            f"{code!r} is not a dossier status; expected one of {known}"
            " (see mappings/npsp/status.toml)",
            field=field,
        )
    return status


def _lookup(table: Mapping[str, Any], value: Any, field: str, what: str) -> Any:
    code = _code_text(value, field)
    if code not in table:
        raise ValidationError(f"{code!r} is not a {what}; expected one of {sorted(table)}",
                              field=field)
    return table[code]


def _read_bool(value: Any, m: NpspMapping, field: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value)
    if text == m.true_value:
        return True
    if text == m.false_value:
        return False
    raise ValidationError(f"{text[:20]!r} is not {m.true_value!r} or {m.false_value!r}",
                          field=field)


def _required(rec: Mapping[str, Any], name: str, where: str = "") -> Any:
    value = rec.get(name)
    if value is None or value == "":
        raise ValidationError("is missing; the portal's record must carry it",
                              field=where + name)
    return value


def _code(rec: Mapping[str, Any], name: str, where: str = "") -> Any:
    """A required code or identity number as the portal wrote it, without the blanks around
    it that its records may carry: the canonical model takes a code exactly as the contracts
    write it, with none."""
    value = _required(rec, name, where)
    return value.strip() if isinstance(value, str) else value


def _count(value: Any) -> Any:
    """A whole number the portal may write as a string of digits, as it writes its codes; the
    canonical model takes a JSON number only. Anything else is left for the model to refuse,
    naming the field."""
    if isinstance(value, str) and value.isascii() and value.strip().isdigit():
        return int(value)
    return value


def _optional_date(rec: Mapping[str, Any], name: str, m: NpspMapping, where: str = "") -> Any:
    value = rec.get(name)
    if value is None or value == "":
        return None
    return m.dates.read(value, where + name)


def _items(rec: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    value = rec.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValidationError("must be a list of objects", field=name)
    return value


def _with_wire_names(rename: Callable[[str], str], build: Callable[[], Any]) -> Any:
    """Run a canonical validation and rename the field of its error to the portal's name."""
    try:
        return build()
    except HubError as exc:
        raise ValidationError(exc.message, code=exc.code,
                              field=rename(exc.field) if exc.field else None) from None


def record_to_dossier(rec: Mapping[str, Any], m: NpspMapping) -> Dossier:
    f, a, p = m.dossier, m.attachment, m.fee
    code = _code(rec, f["code"])
    try:
        agency = codes.parse_dossier(code, f["code"], strip=True).agency.value
    except CodeError as exc:
        raise ValidationError(exc.message, code=exc.code, field=f["code"]) from None
    attachments = []
    for n, doc in enumerate(_items(rec, f["attachments"])):
        at = f"{f['attachments']}[{n}]."
        attachments.append({
            "id": _required(doc, a["id"], at),
            "name": _required(doc, a["name"], at),
            "url": _required(doc, a["url"], at),
            "size": _count(_required(doc, a["size"], at)),
            "sha256": _required(doc, a["sha256"], at),
            "component_code": doc.get(a["component_code"]) or None,
            "digitized": _read_bool(doc.get(a["digitized"], m.false_value), m,
                                    at + a["digitized"]),
        })
    fees = []
    for n, line in enumerate(_items(rec, f["fees"])):
        at = f"{f['fees']}[{n}]."
        raw = _required(line, p["amount"], at)
        try:
            amount = Decimal(str(raw))
        except InvalidOperation:
            raise ValidationError(f"{raw!r:.30} is not an amount", field=at + p["amount"]) from None
        method = line.get(p["method"])
        fees.append({
            "code": _required(line, p["code"], at),
            "name": _required(line, p["name"], at),
            "amount": amount,
            "kind": int(_code_text(line.get(p["kind"], "1"), at + p["kind"])),
            "method": None if method in (None, "") else int(_code_text(method, at + p["method"])),
        })
    data: dict[str, Any] = {
        "code": code,
        "procedure_code": _code(rec, f["procedure_code"]),
        "procedure_name": rec.get(f["procedure_name"]) or None,
        "field_code": rec.get(f["field_code"]) or None,
        "field_name": rec.get(f["field_name"]) or None,
        "agency_code": agency,
        "applicant": {
            "identity_number": _code(rec, f["applicant_identity"]),
            "name": _required(rec, f["applicant_name"]),
            "kind": _lookup(m.kind_from_wire, rec.get(f["applicant_kind"], "1"),
                            f["applicant_kind"], "kind of applicant"),
        },
        "channel": _lookup(m.channel_from_wire, _required(rec, f["channel"]), f["channel"],
                           "submission channel"),
        "status": status_from_wire(_required(rec, f["status"]), m, f["status"]),
        "result_by_post": _read_bool(rec.get(f["result_by_post"], m.false_value), m,
                                     f["result_by_post"]),
        "paid_online": _read_bool(rec.get(f["paid_online"], m.false_value), m,
                                  f["paid_online"]),
        "handling_unit": rec.get(f["handling_unit"]) or None,
        "note": rec.get(f["note"]) or None,
        "attachments": attachments,
        "fees": fees,
    }
    for name in ("submitted_at", "received_at", "due_at", "resolved_at", "returned_at",
                 "refused_at"):
        data[name] = _optional_date(rec, f[name], m)

    def rename(field: str) -> str:
        parts = field.split(".")
        if parts[0] == "applicant" and len(parts) > 1:
            return {"identity_number": f["applicant_identity"], "name": f["applicant_name"],
                    "kind": f["applicant_kind"]}.get(parts[1], field)
        if parts[0] in ("attachments", "fees") and len(parts) == 3:
            table = a if parts[0] == "attachments" else p
            return f"{f[parts[0]]}[{parts[1]}].{table.get(parts[2], parts[2])}"
        if parts[0] == "agency_code":
            return f["code"]
        return f.get(parts[0], field)

    return _with_wire_names(rename, lambda: validate_model(Dossier, data))  # type: ignore[no-any-return]


def record_to_progress(rec: Mapping[str, Any], m: NpspMapping) -> ProgressStep:
    f = m.progress
    data = {
        "dossier_code": _code(rec, f["dossier_code"]),
        "officer": _required(rec, f["officer"]),
        "officer_title": rec.get(f["officer_title"]) or None,
        "department": rec.get(f["department"]) or None,
        "content": _required(rec, f["content"]),
        "status": status_from_wire(_required(rec, f["status"]), m, f["status"]),
        "at": m.dates.read(_required(rec, f["at"]), f["at"]),
        "started_at": _optional_date(rec, f["started_at"], m),
        "due_at": _optional_date(rec, f["due_at"], m),
    }
    return _with_wire_names(  # type: ignore[no-any-return]
        lambda field: f.get(field.split(".")[0], field),
        lambda: validate_model(ProgressStep, data),
    )

