"""The canonical model as the portal's records, driven by ``mappings/npsp``: plain functions
that cannot fail on valid canonical data except through a broken mapping."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.npsp.mapping import NpspMapping
from hub import wirerecord as wr
from hub.model import Dossier, ProgressStep, Status, StatusChange

Record = dict[str, Any]


def status_to_wire(status: Status, m: NpspMapping) -> str:
    return m.status_to_wire[status]


def _bool(value: bool, m: NpspMapping) -> str:
    return m.true_value if value else m.false_value


def dossier_to_record(d: Dossier, m: NpspMapping) -> Record:
    f, a, p, i = m.dossier, m.attachment, m.fee, m.identity
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
    wr.put_set(out, f, d, wr.DOSSIER_TEXTS)
    wr.put_set(out, f, d, wr.DOSSIER_TIMES, m.dates.write)
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
        wr.put(doc, a["component_code"], att.component_code)
        attachments.append(doc)
    out[f["attachments"]] = attachments
    fees = []
    for fee in d.fees:
        line: Record = {
            p["code"]: fee.code,
            p["name"]: fee.name,
            p["amount"]: wr.amount(fee.amount),
            p["kind"]: str(fee.kind),
        }
        wr.put(line, p["method"], None if fee.method is None else str(fee.method))
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
    wr.put_set(out, f, step, ("officer_title", "department"))
    wr.put_set(out, f, step, ("started_at", "due_at"), m.dates.write)
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
