"""Example canonical bodies for the provincial worker and callback: used by the tests and handy
in a demo. The people in them do not exist."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

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
