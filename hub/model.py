"""The canonical model: what a dossier and its events are, independent of any system's format.

Adapters translate between this model and their system's fields; the core only ever sees this.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Self, TypeVar
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hub import codes
from hub.errors import CodeError
from hub.errors import ValidationError as HubValidationError
from hub.jsonbody import ExponentNumber

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
_I = TypeVar("_I", bound=int)


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


# -- what the model takes of JSON ------------------------------------------------------------
# The entry points and the consumers validate JSON values (dicts from the body parser, or from
# an envelope's data) in pydantic's Python mode, whose lax coercions take "2" for 2, "true" for
# true, 1735689600 or "2025-01-01 08:00:00" for a time: more than the contracts
# (schemas/api/*.schema.json) say. Strict mode is no fit: in Python mode it refuses the ISO
# strings and plain integers that JSON carries (an enum wants its instance, a datetime its
# object), and even in JSON mode it takes times with a space, without seconds or as digit
# strings. So the few types JSON and Python disagree on are checked here, before pydantic's
# lax parsing: JSON's own type for numbers and booleans, the contracts' exact form for times
# and dates; Python objects (an adapter's datetime, an enum member) pass as they are.

# The contracts' DateTime (their $defs): RFC 3339 with T, seconds, at most microseconds, and an
# optional offset (none: Vietnam time). The calendar (30 February) is pydantic's to check, the
# years _as_vn_time's. ASCII: a Python \d is any Unicode digit.
_is_datetime = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?", re.ASCII).fullmatch
_is_date = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII).fullmatch
_TIME_EXAMPLE = "2025-01-01T08:00:00+07:00"


def _kind(value: object) -> str:
    """What a value is, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    return "an object" if isinstance(value, dict) else f"a {type(value).__name__}"


def _json_time(value: Any) -> Any:
    # A string first, as JSON carries it (the hot path), then what adapters pass. A date is no
    # time (pydantic would make it midnight), nor a number (a Unix time: whose zone?).
    if type(value) is str:
        if _is_datetime(value):
            return value
        raise PydanticCustomError(
            "datetime_format", "is not a date-time of the form yyyy-mm-ddThh:mm:ss with an "
            "optional fraction of up to 6 digits and an optional offset (Z or +07:00; none "
            "means Vietnam time): send e.g. {example}", {"example": _TIME_EXAMPLE})
    if isinstance(value, datetime):
        return value
    raise PydanticCustomError(
        "datetime_type", "must be a date-time string like {example}, not {kind}",
        {"example": _TIME_EXAMPLE, "kind": _kind(value)})


def _json_date(value: Any) -> Any:
    if type(value) is str:
        if _is_date(value):
            return value
        if not _is_datetime(value):
            raise PydanticCustomError(
                "date_format", "is not a date of the form yyyy-mm-dd: send e.g. 1980-05-17", {})
        what = "a date-time"
    # A datetime is a date too (a subclass): refused, a date of birth has no time of day.
    elif isinstance(value, date) and not isinstance(value, datetime):
        return value
    else:
        what = "a date-time" if isinstance(value, datetime) else _kind(value)
    raise PydanticCustomError(
        "date_type", "must be a date of the form yyyy-mm-dd, e.g. 1980-05-17, not {what}",
        {"what": what})


def _json_integer(value: Any) -> Any:
    # JSON's integers (and 2.0, an integer to JSON Schema, which pydantic's int takes); not a
    # string nor a boolean, which pydantic's lax int would take too ("2", true).
    if type(value) is int or not isinstance(value, str | bool):
        return value
    raise PydanticCustomError(
        "integer_type", "must be an integer, written as a JSON number (2, not \"2\"), "
        "not {kind}", {"kind": _kind(value)})


# The contracts' amounts as text: ASCII digits, an optional fraction; no sign, exponent, blanks
# or digit separators, which pydantic's Decimal took (" 1", "+1", "1e3", "1_000", ".5", "1.").
_is_amount = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII).fullmatch
_is_signed_amount = re.compile(r"-?[0-9]+(?:\.[0-9]+)?", re.ASCII).fullmatch
_AMOUNT_EXAMPLE = "150000 or \"150000.50\""


def _amount_check(is_text: Callable[[str], object]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        # A JSON number (an int, a float not written with an exponent), a decimal string as
        # the contracts' pattern has it, or an adapter's Decimal; not a boolean.
        if type(value) is int or type(value) is float or isinstance(value, Decimal):
            return value
        if type(value) is str:
            if is_text(value):
                return value
            raise PydanticCustomError(
                "decimal_format", "is not an amount written as ASCII digits with an optional "
                "fraction (no sign, exponent, blanks or separators): send e.g. {example}",
                {"example": _AMOUNT_EXAMPLE})
        if isinstance(value, ExponentNumber):
            # The value alone would do for JSON Schema, but an amount written 1e30 is no
            # amount anyone keys in, and digits are what every system downstream reads alike.
            raise PydanticCustomError(
                "decimal_exponent", "is written with an exponent ({value}); write the amount "
                "in plain digits, e.g. {example}", {"value": repr(float(value)),
                                                    "example": _AMOUNT_EXAMPLE})
        raise PydanticCustomError(
            "decimal_type", "must be an amount, a JSON number or a decimal string like "
            "{example}, not {kind}", {"example": _AMOUNT_EXAMPLE, "kind": _kind(value)})

    return check


def _plain(value: Decimal) -> str:
    # The JSON form stays in the contracts' pattern whatever an adapter built: str() would
    # write Decimal(10**30) made by Decimal("1E+30") as "1E+30", and -0.0 (which is >= 0) as
    # "-0.0".
    if value.is_zero() and value.is_signed():
        value = value.copy_abs()
    return format(value, "f")


# Every amount of the model (VND): a non-negative one, as the contracts write it.
Amount = Annotated[Decimal, BeforeValidator(_amount_check(_is_amount)),
                   PlainSerializer(_plain, return_type=str, when_used="json")]
# An amount a system reports (a gateway's payment), which the model does not bound.
SignedAmount = Annotated[Decimal, BeforeValidator(_amount_check(_is_signed_amount)),
                         PlainSerializer(_plain, return_type=str, when_used="json")]
# Every time of the model: naive means Vietnam time; refused outside MIN_YEAR..MAX_YEAR.
VnDateTime = Annotated[datetime, BeforeValidator(_json_time), AfterValidator(_as_vn_time)]
# Every calendar date of the model (dates of birth): MIN_BIRTH_YEAR..MAX_YEAR.
CivilDate = Annotated[date, BeforeValidator(_json_date), AfterValidator(_civil_date)]
# Every integer of the model, plain or an enum: ``JsonInt[int]``, ``JsonInt[Status]``. Its
# booleans are StrictBool (true and false only: lax would take "true", 1 or "yes").
JsonInt = Annotated[_I, BeforeValidator(_json_integer)]
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
    kind: JsonInt[ApplicantKind] = ApplicantKind.CITIZEN
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
    size: JsonInt[int] = Field(ge=0)
    sha256: Sha256Hex
    component_code: str | None = None
    digitized: StrictBool = False


class Fee(_Model):
    code: str = Field(min_length=1, max_length=50)
    name: str = Field(min_length=1, max_length=255)
    amount: Amount = Field(ge=0)
    kind: JsonInt[int] = 1  # 1 fee (phí), 2 charge (lệ phí)
    method: JsonInt[int] | None = None  # HinhThucThu


class Dossier(_Model):
    code: DossierStr
    procedure_code: ProcedureStr
    procedure_name: str | None = None
    field_code: str | None = None
    field_name: str | None = None
    agency_code: AgencyStr
    applicant: Applicant
    channel: JsonInt[Channel]
    status: JsonInt[Status] = Status.NEW
    submitted_at: VnDateTime | None = None
    received_at: VnDateTime | None = None
    due_at: VnDateTime | None = None
    resolved_at: VnDateTime | None = None
    returned_at: VnDateTime | None = None
    refused_at: VnDateTime | None = None
    result_by_post: StrictBool = False
    handling_unit: str | None = None
    note: str | None = None
    attachments: tuple[Attachment, ...] = ()
    fees: tuple[Fee, ...] = ()
    paid_online: StrictBool = False


class StatusChange(_Model):
    dossier_code: DossierStr
    status: JsonInt[Status]
    previous_status: JsonInt[Status] | None = None
    at: VnDateTime
    officer: str | None = None
    note: str | None = None


class ProgressStep(_Model):
    dossier_code: DossierStr
    officer: str
    officer_title: str | None = None
    department: str | None = None
    content: str
    status: JsonInt[Status]
    at: VnDateTime
    started_at: VnDateTime | None = None
    due_at: VnDateTime | None = None


class PaymentRequest(_Model):
    dossier_code: DossierStr
    procedure_code: ProcedureStr
    agency_code: AgencyStr
    reference: str = Field(min_length=1, max_length=50)
    amount: Amount = Field(gt=0)
    fees: tuple[Fee, ...] = ()
    payer: Applicant
    description: str = ""


class PaymentCompleted(_Model):
    dossier_code: DossierStr
    reference: str
    transaction_id: str
    amount: SignedAmount
    paid: StrictBool
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
    cod_amount: Amount = Field(default=Decimal(0), ge=0)
    description: str = ""
    direction: str = Field(default="return", pattern="^(pickup|return)$")


class PostalTracking(_Model):
    dossier_code: DossierStr
    waybill: str
    # 0 not used, 1 registered, 2 collecting, 3 delivered, 4 cancelled
    state: JsonInt[int] = Field(ge=0, le=4)
    at: VnDateTime
    note: str | None = None


class CitizenVerification(_Model):
    dossier_code: DossierStr | None = None
    identity_number: str
    name: str = Field(min_length=1, max_length=200)
    birth_date: CivilDate | None = None
    # Written as a date of 1 January by the population adapter: a year datetime cannot hold
    # would fail there, after the request was accepted.
    birth_year: JsonInt[int] | None = Field(default=None, ge=MIN_BIRTH_YEAR, le=MAX_YEAR)

    @field_validator("identity_number")
    @classmethod
    def _identity(cls, v: str) -> str:
        return codes.parse_identity(v, "identity_number", allow_old=True)


class PaymentInitiated(_Model):
    """The gateway accepted a payment request: where the citizen pays."""

    dossier_code: DossierStr
    reference: str = Field(min_length=1, max_length=50)
    amount: Amount = Field(gt=0)
    payment_url: str = Field(pattern=r"^https?://")
    at: VnDateTime


# -- citizens -------------------------------------------------------------------------------

IdentityStr = Annotated[str, AfterValidator(lambda v: codes.parse_identity(v, "identity_number"))]
AnyIdentityStr = Annotated[
    str, AfterValidator(lambda v: codes.parse_identity(v, "identity_number", allow_old=True))
]
# [0-9], not \d: pydantic's regex engine, like Python's, takes any Unicode digit for \d.
OldIdentityStr = Annotated[str, Field(pattern=r"^[0-9]{9}$")]
# Administrative unit codes (province, district, commune), ASCII digits as for OldIdentityStr.
_UNIT_CODE = r"^[0-9]{2,5}$"


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

    province_code: str = Field(pattern=_UNIT_CODE)
    district_code: str | None = Field(default=None, pattern=_UNIT_CODE)
    commune_code: str | None = Field(default=None, pattern=_UNIT_CODE)
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
    birth_year: JsonInt[int] = Field(ge=MIN_BIRTH_YEAR, le=MAX_YEAR)
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
    matched: StrictBool
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
    # StrictBool's own words ("Input should be a valid boolean") do not say what to send.
    message = (f"must be true or false (a JSON boolean), not {_kind(err.get('input'))}"
               if err["type"] == "bool_type" else err["msg"])
    return HubValidationError(f"{message} (got {err.get('input')!r:.80})", field=field)


def validate_model(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc) from None
