"""What the portal's tests build on: example canonical bodies (the people in them do not exist)
and the translation run backwards, the portal's records read into the canonical model (the hub
only writes them; the tests read them back to check nothing is lost)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.npsp.mapping import NpspMapping
from hub import codes
from hub.errors import CodeError, HubError, ValidationError
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
# 01:30 UTC is 08:30 in Hà Nội: the wire must say 083000.
SUBMITTED_AT = datetime(2025, 1, 1, 1, 30, tzinfo=UTC)


def sample_dossier(code: str = DOSSIER_CODE, **changes: Any) -> Dossier:
    base = Dossier(
        code=code,
        procedure_code="2.002492",
        procedure_name="Đăng ký khai sinh",
        field_code="G09-TP",
        field_name="Hộ tịch",
        agency_code=code.split("-")[0],
        applicant=Applicant(
            identity_number="001203004567", name="Nguyễn Văn An", kind=ApplicantKind.CITIZEN
        ),
        channel=Channel.ONLINE,
        status=Status.NEW,
        submitted_at=SUBMITTED_AT,
        due_at=datetime(2025, 1, 6, 10, 0, tzinfo=UTC),
        result_by_post=True,
        handling_unit="UBND xã Đông Sơn",
        note="Nộp trực tuyến",
        attachments=(
            Attachment(
                id="tep-1", name="to-khai.pdf", url="https://files.example.vn/tep-1",
                size=12345, sha256="ab" * 32, component_code="TP01", digitized=True,
            ),
        ),
        fees=(Fee(code="LP01", name="Lệ phí khai sinh", amount=Decimal(8000), kind=2, method=1),),
        paid_online=True,
    )
    return base.model_copy(update=changes) if changes else base


def sample_status(
    status: Status, code: str = DOSSIER_CODE, *, at: datetime | None = None,
    note: str | None = None,
) -> StatusChange:
    return StatusChange(
        dossier_code=code, status=status, at=at or datetime(2025, 1, 2, 2, 0, tzinfo=UTC),
        officer="Trần Thị Bình", note=note,
    )


def sample_progress(code: str = DOSSIER_CODE) -> ProgressStep:
    return ProgressStep(
        dossier_code=code,
        officer="Trần Thị Bình",
        officer_title="Công chức tư pháp - hộ tịch",
        department="Bộ phận một cửa",
        content="Đã kiểm tra hồ sơ, chuyển lãnh đạo ký",
        status=Status.PROCESSING,
        at=datetime(2025, 1, 2, 3, 15, tzinfo=UTC),
        started_at=datetime(2025, 1, 2, 2, 0, tzinfo=UTC),
        due_at=datetime(2025, 1, 6, 10, 0, tzinfo=UTC),
    )


def mask_name(name: str | None) -> str:
    """How the portal's officers see a citizen's name: ``Nguyễn Văn An`` -> ``N. V. A.``"""
    if not name:
        return ""
    return " ".join(part[0] + "." for part in name.split())



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

