"""Example canonical bodies for the portal's worker: used by the tests and handy in a demo
(``python -c "from adapters.npsp.examples import sample_dossier; print(sample_dossier())"``).
The people in them do not exist."""

from __future__ import annotations

from datetime import UTC, datetime
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
