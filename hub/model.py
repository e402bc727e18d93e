"""The canonical model: what a dossier and its events are, independent of any system's format.

Adapters translate between this model and their system's fields; the core only ever sees this.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hub import codes
from hub.errors import CodeError
from hub.errors import ValidationError as HubValidationError

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


class Status(IntEnum):
    """The ten national dossier statuses (TrangThaiHoSo)."""

    NEW = 1
    RECEIVED = 2
    NOT_RECEIVED = 3  # refused at intake
    PROCESSING = 4
    SUPPLEMENT_REQUESTED = 5
    FINANCIAL_OBLIGATION = 6
    WITHDRAWN = 7
    STOPPED = 8
    RESOLVED = 9
    RESULT_RETURNED = 10


# Which status may follow which. Terminal statuses map to nothing. A status may be reported
# again (idempotent resend), which ``check_transition`` allows separately.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.NEW: frozenset({Status.RECEIVED, Status.NOT_RECEIVED, Status.WITHDRAWN}),
    Status.RECEIVED: frozenset(
        {
            Status.PROCESSING,
            Status.SUPPLEMENT_REQUESTED,
            Status.FINANCIAL_OBLIGATION,
            Status.WITHDRAWN,
            Status.STOPPED,
            Status.RESOLVED,
        }
    ),
    Status.PROCESSING: frozenset(
        {
            Status.SUPPLEMENT_REQUESTED,
            Status.FINANCIAL_OBLIGATION,
            Status.WITHDRAWN,
            Status.STOPPED,
            Status.RESOLVED,
        }
    ),
    Status.SUPPLEMENT_REQUESTED: frozenset({Status.PROCESSING, Status.WITHDRAWN, Status.STOPPED}),
    Status.FINANCIAL_OBLIGATION: frozenset({Status.PROCESSING, Status.WITHDRAWN, Status.STOPPED}),
    Status.RESOLVED: frozenset({Status.RESULT_RETURNED}),
    Status.NOT_RECEIVED: frozenset(),
    Status.WITHDRAWN: frozenset(),
    Status.STOPPED: frozenset(),
    Status.RESULT_RETURNED: frozenset(),
}


def can_transition(old: Status | None, new: Status) -> bool:
    if old is None:
        return new in (Status.NEW, Status.RECEIVED, Status.NOT_RECEIVED)
    return new == old or new in TRANSITIONS[old]


def check_transition(old: Status | None, new: Status, field: str = "status") -> None:
    if not can_transition(old, new):
        allowed = sorted(int(s) for s in TRANSITIONS[old]) if old else [1, 2, 3]
        raise HubValidationError(
            f"cannot go from status {int(old) if old else 'none'} "
            f"({old.name if old else 'no status yet'}) to {int(new)} ({new.name}); "
            f"allowed next statuses: {allowed or 'none, the dossier is closed'}",
            code="client.bad_transition",
            field=field,
        )


class Channel(IntEnum):
    """Submission channel (KenhThucHien)."""

    IN_PERSON = 1
    ONLINE = 2
    POSTAL = 3


class ApplicantKind(IntEnum):
    """LoaiDoiTuong."""

    CITIZEN = 1
    BUSINESS = 2
    AGENCY = 3
    OTHER = 4


# The years a time of the model may fall in. A dossier's times (submitted, due, a status
# change, a payment, a postal scan) belong to administrative life: none predates the 20th
# century, none is centuries ahead. The bounds also keep every time far from datetime's own
# limits (years 1 and 9999), so that each conversion made of it stays representable: to UTC
# for the store, to Vietnam time for a wire format, to a Unix timestamp (a UTC offset is always
# less than 24 hours); and strftime writes the year with four digits, as the fixed-width wire
# formats (yyyyMMddHHmmss) need. Years of birth share the upper bound.
MIN_YEAR = 1900
MAX_YEAR = 2200
# Years of birth go back further (the population database keeps citizens born from 1850).
MIN_BIRTH_YEAR = 1850


def _time_problem(value: datetime) -> str | None:
    # The year as written, naive or not: within the bounds, no offset can carry the time out
    # of what datetime represents.
    if MIN_YEAR <= value.year <= MAX_YEAR:
        return None
    return (f"is in the year {value.year}, outside the years {MIN_YEAR} to {MAX_YEAR} a "
            "dossier's times fall in")


def _as_vn_time(value: datetime) -> datetime:
    problem = _time_problem(value)
    if problem is not None:
        raise PydanticCustomError("datetime_out_of_range", "{problem}; send the actual time, "
                                  "e.g. 2025-01-01T08:00:00+07:00", {"problem": problem})
    # Systems send naive local times on the wire; they are Vietnam time by convention.
    return value.replace(tzinfo=VN_TZ) if value.tzinfo is None else value


def check_time(value: datetime, field: str) -> datetime:
    """``value`` if it is a time the model takes (``VnDateTime``), else the hub's
    ``ValidationError`` naming ``field``. For an adapter that reads a system's own time format
    and uses the time (in its own tables, converted to UTC) before the model sees it."""
    problem = _time_problem(value)
    if problem is not None:
        raise HubValidationError(f"{problem}; the system must send the actual time",
                                 field=field)
    return value


def _civil_date(value: date) -> date:
    # A calendar date (a birth date) is never converted, but it is written with strftime in
    # fixed-width wire formats, which need a four-digit year.
    if not MIN_BIRTH_YEAR <= value.year <= MAX_YEAR:
        raise PydanticCustomError(
            "date_out_of_range",
            "is in the year {year}, outside the years {min_year} to {max_year}; send the "
            "actual date, e.g. 1980-05-17, or leave it out when it is not known",
            {"year": value.year, "min_year": MIN_BIRTH_YEAR, "max_year": MAX_YEAR},
        )
    return value


# Every time of the model: naive means Vietnam time; refused outside MIN_YEAR..MAX_YEAR.
VnDateTime = Annotated[datetime, AfterValidator(_as_vn_time)]
# Every calendar date of the model (dates of birth): MIN_BIRTH_YEAR..MAX_YEAR.
CivilDate = Annotated[date, AfterValidator(_civil_date)]
AgencyStr = Annotated[str, AfterValidator(lambda v: codes.parse_agency(v).value)]
DossierStr = Annotated[str, AfterValidator(lambda v: codes.parse_dossier(v).value)]
ProcedureStr = Annotated[str, AfterValidator(lambda v: codes.parse_procedure(v).value)]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Applicant(_Model):
    identity_number: str
    name: str = Field(min_length=1, max_length=200)
    birth_date: CivilDate | None = None
    kind: ApplicantKind = ApplicantKind.CITIZEN
    address: str | None = None
    phone: str | None = None
    email: str | None = None

    @field_validator("identity_number")
    @classmethod
    def _identity(cls, v: str) -> str:
        return codes.parse_identity(v, "identity_number", allow_old=True)


class Attachment(_Model):
    """A document travels by reference (claim check): where it is, how big, and its digest."""

    id: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=255)
    url: str = Field(pattern=r"^https?://")
    size: int = Field(ge=0)
    sha256: Sha256Hex
    component_code: str | None = None
    digitized: bool = False


class Fee(_Model):
    code: str = Field(min_length=1, max_length=50)
    name: str = Field(min_length=1, max_length=255)
    amount: Decimal = Field(ge=0)
    kind: int = 1  # 1 fee (phí), 2 charge (lệ phí)
    method: int | None = None  # HinhThucThu


class Dossier(_Model):
    code: DossierStr
    procedure_code: ProcedureStr
    procedure_name: str | None = None
    field_code: str | None = None
    field_name: str | None = None
    agency_code: AgencyStr
    applicant: Applicant
    channel: Channel
    status: Status = Status.NEW
    submitted_at: VnDateTime | None = None
    received_at: VnDateTime | None = None
    due_at: VnDateTime | None = None
    resolved_at: VnDateTime | None = None
    returned_at: VnDateTime | None = None
    refused_at: VnDateTime | None = None
    result_by_post: bool = False
    handling_unit: str | None = None
    note: str | None = None
    attachments: tuple[Attachment, ...] = ()
    fees: tuple[Fee, ...] = ()
    paid_online: bool = False


class StatusChange(_Model):
    dossier_code: DossierStr
    status: Status
    previous_status: Status | None = None
    at: VnDateTime
    officer: str | None = None
    note: str | None = None


class ProgressStep(_Model):
    dossier_code: DossierStr
    officer: str
    officer_title: str | None = None
    department: str | None = None
    content: str
    status: Status
    at: VnDateTime
    started_at: VnDateTime | None = None
    due_at: VnDateTime | None = None


class PaymentRequest(_Model):
    dossier_code: DossierStr
    procedure_code: ProcedureStr
    agency_code: AgencyStr
    reference: str = Field(min_length=1, max_length=50)
    amount: Decimal = Field(gt=0)
    fees: tuple[Fee, ...] = ()
    payer: Applicant
    description: str = ""


class PaymentCompleted(_Model):
    dossier_code: DossierStr
    reference: str
    transaction_id: str
    amount: Decimal
    paid: bool
    error_code: str | None = None
    at: VnDateTime


class Party(_Model):
    name: str
    address: str
    phone: str
    province: str | None = None
    district: str | None = None
    email: str | None = None


class PostalPickup(_Model):
    dossier_code: DossierStr
    sender: Party
    receiver: Party
    cod_amount: Decimal = Field(default=Decimal(0), ge=0)
    description: str = ""
    direction: str = Field(default="return", pattern="^(pickup|return)$")


class PostalTracking(_Model):
    dossier_code: DossierStr
    waybill: str
    # 0 not used, 1 registered, 2 collecting, 3 delivered, 4 cancelled
    state: int = Field(ge=0, le=4)
    at: VnDateTime
    note: str | None = None


class CitizenVerification(_Model):
    dossier_code: DossierStr | None = None
    identity_number: str
    name: str = Field(min_length=1, max_length=200)
    birth_date: CivilDate | None = None
    # Written as a date of 1 January by the population adapter: a year datetime cannot hold
    # would fail there, after the request was accepted.
    birth_year: int | None = Field(default=None, ge=MIN_BIRTH_YEAR, le=MAX_YEAR)

    @field_validator("identity_number")
    @classmethod
    def _identity(cls, v: str) -> str:
        return codes.parse_identity(v, "identity_number", allow_old=True)


class PaymentInitiated(_Model):
    """The gateway accepted a payment request: where the citizen pays."""

    dossier_code: DossierStr
    reference: str = Field(min_length=1, max_length=50)
    amount: Decimal = Field(gt=0)
    payment_url: str = Field(pattern=r"^https?://")
    at: VnDateTime


# -- citizens -------------------------------------------------------------------------------

IdentityStr = Annotated[str, AfterValidator(lambda v: codes.parse_identity(v, "identity_number"))]
AnyIdentityStr = Annotated[
    str, AfterValidator(lambda v: codes.parse_identity(v, "identity_number", allow_old=True))
]
OldIdentityStr = Annotated[str, Field(pattern=r"^\d{9}$")]


class Gender(StrEnum):
    MALE = "male"
    FEMALE = "female"
    UNKNOWN = "unknown"


class PersonName(_Model):
    family: str = Field(min_length=1, max_length=200)
    middle: str | None = None
    given: str = Field(min_length=1, max_length=200)

    @property
    def full(self) -> str:
        return " ".join(p for p in (self.family, self.middle, self.given) if p)


class Address(_Model):
    """Administrative unit codes plus free text. ``district_code`` is absent on addresses
    recorded after the district level was abolished (1 July 2025)."""

    province_code: str = Field(pattern=r"^\d{2,5}$")
    district_code: str | None = Field(default=None, pattern=r"^\d{2,5}$")
    commune_code: str | None = Field(default=None, pattern=r"^\d{2,5}$")
    detail: str | None = Field(default=None, max_length=500)


class Relative(_Model):
    name: str = Field(min_length=1, max_length=200)
    identity_number: IdentityStr | None = None


class CitizenRecord(_Model):
    identity_number: IdentityStr
    old_identity_number: OldIdentityStr | None = None
    name: PersonName
    gender: Gender
    ethnicity_code: str | None = None
    ethnicity: str | None = None  # decoded from the code by the mapping, when known
    nationality: str | None = None
    birth_date: CivilDate | None = None
    birth_year: int = Field(ge=MIN_BIRTH_YEAR, le=MAX_YEAR)
    hometown: Address | None = None
    permanent_address: Address | None = None
    current_address: Address | None = None
    father: Relative | None = None
    mother: Relative | None = None
    spouse: Relative | None = None

    @model_validator(mode="after")
    def _birth_consistent(self) -> Self:
        if self.birth_date is not None and self.birth_date.year != self.birth_year:
            raise ValueError(
                f"birth_year {self.birth_year} differs from the year of birth_date "
                f"{self.birth_date.year}"
            )
        return self


class CitizenVerified(_Model):
    """Body of ``vn.gov.citizen.verified``: the answer to a verification request. Kept minimal:
    the identity number says whom it is about, ``matched`` what the population database said.
    ``record`` is filled only when the adapter is configured to look the citizen up."""

    dossier_code: DossierStr | None = None
    identity_number: AnyIdentityStr  # as asked: 12 digits, or 9 for an old ID card
    matched: bool
    checked_at: VnDateTime
    record: CitizenRecord | None = None


# Event type → body model. The envelope's ``type`` picks the model that validates ``data``.
EVENT_MODELS: dict[str, type[BaseModel]] = {
    "vn.gov.dossier.submitted": Dossier,
    "vn.gov.dossier.status-changed": StatusChange,
    "vn.gov.dossier.progress-reported": ProgressStep,
    "vn.gov.payment.requested": PaymentRequest,
    "vn.gov.payment.initiated": PaymentInitiated,
    "vn.gov.payment.completed": PaymentCompleted,
    "vn.gov.postal.pickup-requested": PostalPickup,
    "vn.gov.postal.tracking-updated": PostalTracking,
    "vn.gov.citizen.verification-requested": CitizenVerification,
    "vn.gov.citizen.verified": CitizenVerified,
}


def parse_event_data(event_type: str, data: Any) -> BaseModel:
    """Validate an event body against its canonical model; errors name the first bad field."""
    model = EVENT_MODELS.get(event_type)
    if model is None:
        raise HubValidationError(
            f"unknown event type {event_type!r}; known types: {sorted(EVENT_MODELS)}",
            code="client.unknown_type",
            field="type",
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc) from None


def _first_error(exc: ValidationError) -> HubValidationError:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or None
    ctx = err.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, CodeError):
        return HubValidationError(cause.message, code=cause.code, field=field)
    return HubValidationError(f"{err['msg']} (got {err.get('input')!r:.80})", field=field)


def validate_model(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc) from None
