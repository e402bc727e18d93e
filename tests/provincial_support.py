"""What the provincial tests build on: example canonical bodies (the people in them do not
exist), what a province pushes (status changes and processing steps in its format) and a dossier
in the province's format read back into the canonical model (the hub only writes them)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.provincial.mapping import ProvincialMapping
from adapters.provincial.translate import Doc, status_from_wire
from hub import wirerecord as wr
from hub.errors import ValidationError
from hub.model import (
    Applicant,
    ApplicantKind,
    Attachment,
    Channel,
    Dossier,
    Fee,
    ProgressStep,
    Status,
    StatusChange,
    validate_model,
)

DOSSIER_CODE = "000.00.00.H56-250101-0001"
PORTAL_SOURCE = "VN:GOV:000.00.00.G22:dvcqg"
PROVINCE_SOURCE = "VN:GOV:000.00.00.H56:igate"


def sample_dossier(code: str = DOSSIER_CODE, **changes: Any) -> Dossier:
    base = Dossier(
        code=code,
        procedure_code="1.010708",
        procedure_name="Cấp giấy phép xây dựng nhà ở riêng lẻ",
        field_code="XD",
        field_name="Xây dựng",
        agency_code="000.20.31.H56",
        applicant=Applicant(
            identity_number="038095001234", name="Lê Thị Hoa", kind=ApplicantKind.CITIZEN,
            birth_date=date(1995, 3, 14), address="Thôn 3, xã Quảng Phú, Thanh Hóa",
            phone="0912345678", email="hoa@example.vn",
        ),
        channel=Channel.ONLINE,
        status=Status.NEW,
        # 17:45 UTC on 31 Dec is 00:45 on 1 Jan in Vietnam.
        submitted_at=datetime(2024, 12, 31, 17, 45, 5, tzinfo=UTC),
        due_at=datetime(2025, 1, 15, 10, 0, tzinfo=UTC),
        result_by_post=False,
        handling_unit="Phòng Kinh tế - Hạ tầng",
        attachments=(
            Attachment(id="f-77", name="ban-ve.pdf", url="https://files.example.vn/f-77",
                       size=2_048_000, sha256="0f" * 32, component_code="TP02"),
        ),
        fees=(Fee(code="LP-XD", name="Lệ phí cấp phép xây dựng", amount=Decimal(75000),
                  kind=2),),
        paid_online=False,
    )
    return base.model_copy(update=changes) if changes else base


def sample_status(status: Status, previous: Status | None = None, *,
                  code: str = DOSSIER_CODE, at: datetime | None = None) -> StatusChange:
    return StatusChange(dossier_code=code, status=status, previous_status=previous,
                        at=at or datetime(2025, 1, 2, 2, 0, tzinfo=UTC),
                        officer="Phạm Văn Đức", note="Cập nhật từ hệ thống một cửa")


def sample_progress(code: str = DOSSIER_CODE) -> ProgressStep:
    return ProgressStep(
        dossier_code=code, officer="Phạm Văn Đức", officer_title="Chuyên viên",
        department="Phòng Kinh tế - Hạ tầng", content="Thẩm định hồ sơ thiết kế",
        status=Status.PROCESSING, at=datetime(2025, 1, 3, 4, 0, tzinfo=UTC),
        started_at=datetime(2025, 1, 2, 2, 0, tzinfo=UTC),
        due_at=datetime(2025, 1, 10, 10, 0, tzinfo=UTC),
    )


def status_change_to_wire(
    change: StatusChange, m: ProvincialMapping, *, sequence: int | None = None,
    procedure_code: str | None = None,
) -> Doc:
    """What the province pushes for a status change (the simulator and tests build theirs
    with this)."""
    f = m.status_change
    out: Doc = {
        m.update["kind"]: m.update_kinds["status"],
        f["dossier_code"]: change.dossier_code,
        f["status"]: m.status_to_wire[change.status],
        f["at"]: m.dates.write(change.at),
    }
    if change.previous_status is not None:
        out[f["previous_status"]] = m.status_to_wire[change.previous_status]
    wr.put(out, f["officer"], change.officer)
    wr.put(out, f["note"], change.note)
    wr.put(out, f["sequence"], sequence)
    wr.put(out, f["procedure_code"], procedure_code)
    return out


def progress_to_wire(
    step: ProgressStep, m: ProvincialMapping, *, sequence: int | None = None,
    procedure_code: str | None = None,
) -> Doc:
    f = m.progress
    out: Doc = {
        m.update["kind"]: m.update_kinds["progress"],
        f["dossier_code"]: step.dossier_code,
        f["officer"]: step.officer,
        f["content"]: step.content,
        f["status"]: m.status_to_wire[step.status],
        f["at"]: m.dates.write(step.at),
    }
    wr.put_set(out, f, step, ("officer_title", "department"))
    wr.put_set(out, f, step, ("started_at", "due_at"), m.dates.write)
    wr.put(out, f["sequence"], sequence)
    wr.put(out, f["procedure_code"], procedure_code)
    return out


def wire_to_dossier(doc: Mapping[str, Any], m: ProvincialMapping, where: str = "") -> Dossier:
    f, ap, at, fe = m.dossier, m.applicant, m.attachment, m.fee
    raw_applicant = wr.required(doc, f["applicant"], where)
    if not isinstance(raw_applicant, dict):
        raise ValidationError("must be an object", field=where + f["applicant"])
    aw = f"{where}{f['applicant']}."
    birth = raw_applicant.get(ap["birth_date"])
    applicant = {
        "identity_number": wr.code(raw_applicant, ap["identity_number"], aw),
        "name": wr.required(raw_applicant, ap["name"], aw),
        "kind": wr.word(m.kind_from_wire,
                      raw_applicant.get(ap["kind"], m.kind_to_wire[ApplicantKind.CITIZEN]),
                      aw + ap["kind"], "kind of applicant"),
        "birth_date": (None if birth in (None, "")
                       else m.dates.read_date(birth, aw + ap["birth_date"])),
        "address": wr.optional_str(raw_applicant, ap["address"], aw),
        "phone": wr.optional_str(raw_applicant, ap["phone"], aw),
        "email": wr.optional_str(raw_applicant, ap["email"], aw),
    }
    attachments = []
    for n, item in enumerate(doc.get(f["attachments"]) or []):
        iw = f"{where}{f['attachments']}[{n}]."
        if not isinstance(item, dict):
            raise ValidationError("must be an object", field=iw[:-1])
        attachments.append({
            "id": wr.required(item, at["id"], iw), "name": wr.required(item, at["name"], iw),
            "url": wr.required(item, at["url"], iw), "size": wr.required(item, at["size"], iw),
            "sha256": wr.required(item, at["sha256"], iw),
            "component_code": item.get(at["component_code"]) or None,
            "digitized": bool(item.get(at["digitized"], False)),
        })
    fees = []
    for n, item in enumerate(doc.get(f["fees"]) or []):
        iw = f"{where}{f['fees']}[{n}]."
        if not isinstance(item, dict):
            raise ValidationError("must be an object", field=iw[:-1])
        raw = wr.required(item, fe["amount"], iw)
        try:
            amount = Decimal(str(raw))
        except InvalidOperation:
            raise ValidationError(f"{str(raw)[:20]!r} is not an amount",
                                  field=iw + fe["amount"]) from None
        fees.append({"code": wr.required(item, fe["code"], iw),
                     "name": wr.required(item, fe["name"], iw), "amount": amount,
                     "kind": item.get(fe["kind"], 1), "method": item.get(fe["method"])})
    data: Doc = {
        "code": wr.code(doc, f["code"], where),
        "procedure_code": wr.code(doc, f["procedure_code"], where),
        "procedure_name": wr.optional_str(doc, f["procedure_name"], where),
        "field_code": wr.optional_str(doc, f["field_code"], where),
        "field_name": wr.optional_str(doc, f["field_name"], where),
        "agency_code": wr.code(doc, f["agency_code"], where),
        "applicant": applicant,
        "channel": wr.word(m.channel_from_wire, wr.required(doc, f["channel"], where),
                         where + f["channel"], "submission channel"),
        "status": status_from_wire(wr.required(doc, f["status"], where), m, where + f["status"]),
        "result_by_post": bool(doc.get(f["result_by_post"], False)),
        "paid_online": bool(doc.get(f["paid_online"], False)),
        "handling_unit": wr.optional_str(doc, f["handling_unit"], where),
        "note": wr.optional_str(doc, f["note"], where),
        "attachments": attachments,
        "fees": fees,
    }
    for name in ("submitted_at", "received_at", "due_at", "resolved_at", "returned_at",
                 "refused_at"):
        data[name] = wr.optional_time(doc, f[name], m.dates, where)

    def rename(field: str) -> str:
        parts = field.split(".")
        if parts[0] == "applicant" and len(parts) > 1:
            return f"{where}{f['applicant']}.{ap.get(parts[1], parts[1])}"
        if parts[0] in ("attachments", "fees") and len(parts) == 3:
            table = at if parts[0] == "attachments" else fe
            return f"{where}{f[parts[0]]}[{parts[1]}].{table.get(parts[2], parts[2])}"
        return where + f.get(parts[0], field)

    return wr.validated(lambda: validate_model(Dossier, data), rename)  # type: ignore[no-any-return]
