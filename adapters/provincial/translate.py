"""Canonical model <-> the provincial system's JSON, both ways, driven by
``mappings/provincial``.

Plain functions: no I/O. Errors on the way in are ``hub.errors.ValidationError`` naming the
province's field as the province wrote it (``danhSach[1].thoiGian``, ``chuHoSo.soDinhDanh``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.provincial.mapping import ProvincialMapping
from hub import codes
from hub import wirerecord as wr
from hub.dossierreports import Report
from hub.errors import HubError, ValidationError
from hub.model import (
    Dossier,
    ProgressStep,
    Status,
    StatusChange,
    check_transition,
    validate_model,
)

Doc = wr.Doc
STATUS_CHANGED = "vn.gov.dossier.status-changed"
PROGRESS_REPORTED = "vn.gov.dossier.progress-reported"


# ---------------------------------------------------------------- canonical -> province


def dossier_to_wire(d: Dossier, m: ProvincialMapping) -> Doc:
    f, ap, at, fe = m.dossier, m.applicant, m.attachment, m.fee
    applicant: Doc = {
        ap["identity_number"]: d.applicant.identity_number,
        ap["name"]: d.applicant.name,
        ap["kind"]: m.kind_to_wire[d.applicant.kind],
    }
    if d.applicant.birth_date is not None:
        applicant[ap["birth_date"]] = m.dates.write_date(d.applicant.birth_date)
    wr.put(applicant, ap["address"], d.applicant.address)
    wr.put(applicant, ap["phone"], d.applicant.phone)
    wr.put(applicant, ap["email"], d.applicant.email)
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
                fe["code"]: fee.code, fe["name"]: fee.name, fe["amount"]: wr.amount(fee.amount),
                fe["kind"]: fee.kind,
                **({fe["method"]: fee.method} if fee.method is not None else {}),
            }
            for fee in d.fees
        ],
    }
    wr.put_set(out, f, d, wr.DOSSIER_TEXTS)
    wr.put_set(out, f, d, wr.DOSSIER_TIMES, m.dates.write)
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


def wire_to_status_change(doc: Mapping[str, Any], m: ProvincialMapping, where: str = "") -> Report:
    f = m.status_change
    status = status_from_wire(wr.required(doc, f["status"], where), m, where + f["status"])
    previous_word = doc.get(f["previous_status"])
    previous = (None if previous_word in (None, "")
                else status_from_wire(previous_word, m, where + f["previous_status"]))
    if previous is not None:
        try:
            check_transition(previous, status, where + f["status"])
        except HubError as exc:
            raise ValidationError(exc.message, code=exc.code, field=exc.field) from None
    data: Doc = {
        "dossier_code": wr.code(doc, f["dossier_code"], where),
        "status": status,
        "previous_status": previous,
        "at": m.dates.read(wr.required(doc, f["at"], where), where + f["at"]),
        "officer": wr.optional_str(doc, f["officer"], where),
        "note": wr.optional_str(doc, f["note"], where),
    }
    body = wr.validated(lambda: validate_model(StatusChange, data),
                        lambda field: where + f.get(field.split(".")[0], field))
    return Report(STATUS_CHANGED, body, wr.counter(doc, f["sequence"], where),
                  wr.parsed_code(codes.parse_procedure, doc, f["procedure_code"], where))


def wire_to_progress(doc: Mapping[str, Any], m: ProvincialMapping, where: str = "") -> Report:
    f = m.progress
    data: Doc = {
        "dossier_code": wr.code(doc, f["dossier_code"], where),
        "officer": wr.required(doc, f["officer"], where),
        "officer_title": wr.optional_str(doc, f["officer_title"], where),
        "department": wr.optional_str(doc, f["department"], where),
        "content": wr.required(doc, f["content"], where),
        "status": status_from_wire(wr.required(doc, f["status"], where), m, where + f["status"]),
        "at": m.dates.read(wr.required(doc, f["at"], where), where + f["at"]),
        "started_at": wr.optional_time(doc, f["started_at"], m.dates, where),
        "due_at": wr.optional_time(doc, f["due_at"], m.dates, where),
    }
    body = wr.validated(lambda: validate_model(ProgressStep, data),
                        lambda field: where + f.get(field.split(".")[0], field))
    return Report(PROGRESS_REPORTED, body, wr.counter(doc, f["sequence"], where),
                  wr.parsed_code(codes.parse_procedure, doc, f["procedure_code"], where))


def wire_to_update(doc: Any, m: ProvincialMapping, where: str = "") -> Report:
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

