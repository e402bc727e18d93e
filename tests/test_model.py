import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from types import NoneType
from typing import Annotated, Any, get_args, get_origin
from zoneinfo import ZoneInfo

import npsp_support as npsp_examples
import provincial_support as provincial_examples
import pytest
from pydantic import AfterValidator, BaseModel

from hub import model as model_module
from hub.envelope import Envelope
from hub.errors import ValidationError
from hub.jsonbody import parse_object
from hub.model import (
    EVENT_MODELS,
    MAX_YEAR,
    MIN_YEAR,
    TRANSITIONS,
    VN_TZ,
    Address,
    Applicant,
    ApplicantKind,
    Channel,
    CitizenRecord,
    CitizenVerification,
    CitizenVerified,
    Dossier,
    Fee,
    Gender,
    Party,
    PaymentCompleted,
    PaymentInitiated,
    PaymentRequest,
    PersonName,
    PostalPickup,
    PostalTracking,
    Status,
    can_transition,
    check_transition,
    parse_event_data,
    validate_model,
)
from hub.store import Store
from hub.wiredates import WireDates


def dossier(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "code": "000.00.00.H56-250101-0001",
        "procedure_code": "2.002492",
        "agency_code": "000.00.00.H56",
        "applicant": {"identity_number": "001203004567", "name": "Nguyễn Văn A"},
        "channel": 2,
        "attachments": [
            {
                "id": "f1",
                "name": "don.pdf",
                "url": "https://files.example/don.pdf",
                "size": 1024,
                "sha256": "a" * 64,
            }
        ],
        "fees": [{"code": "LP1", "name": "Lệ phí", "amount": "50000"}],
    }
    base.update(over)
    return base


def test_valid_dossier_parses() -> None:
    d = validate_model(Dossier, dossier(submitted_at="2025-01-01T08:00:00"))
    assert d.status is Status.NEW
    assert d.submitted_at.tzinfo == VN_TZ  # naive wire times are Vietnam time
    assert d.attachments[0].size == 1024


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"code": "bad"}, "code"),
        ({"agency_code": "H5"}, "agency_code"),
        ({"procedure_code": "2.1"}, "procedure_code"),
        ({"applicant": {"identity_number": "12", "name": "A"}}, "applicant.identity_number"),
        ({"channel": 9}, "channel"),
        ({"channel": "online"}, "channel"),
    ],
)
def test_bad_dossier_names_field(over: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        validate_model(Dossier, dossier(**over))
    assert err.value.field == field


def test_missing_field_named() -> None:
    data = dossier()
    del data["procedure_code"]
    with pytest.raises(ValidationError) as err:
        validate_model(Dossier, data)
    assert err.value.field == "procedure_code"


def test_attachment_digest_must_be_sha256() -> None:
    data = dossier()
    data["attachments"][0]["sha256"] = "xyz"
    with pytest.raises(ValidationError) as err:
        validate_model(Dossier, data)
    assert err.value.field == "attachments.0.sha256"


def test_every_status_has_transitions_entry() -> None:
    assert set(TRANSITIONS) == set(Status)
    assert [int(s) for s in Status] == list(range(1, 11))


@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [
        (None, Status.NEW, True),
        (None, Status.RESOLVED, False),
        (Status.NEW, Status.RECEIVED, True),
        (Status.RECEIVED, Status.PROCESSING, True),
        (Status.PROCESSING, Status.RESOLVED, True),
        (Status.RESOLVED, Status.RESULT_RETURNED, True),
        (Status.RESULT_RETURNED, Status.PROCESSING, False),
        (Status.WITHDRAWN, Status.PROCESSING, False),
        (Status.SUPPLEMENT_REQUESTED, Status.PROCESSING, True),
        (Status.PROCESSING, Status.PROCESSING, True),
        (Status.NEW, Status.RESOLVED, False),
    ],
)
def test_transitions(old: Status | None, new: Status, ok: bool) -> None:
    assert can_transition(old, new) is ok


def test_bad_transition_error_lists_allowed() -> None:
    with pytest.raises(ValidationError, match="allowed next statuses") as err:
        check_transition(Status.RESULT_RETURNED, Status.PROCESSING)
    assert err.value.code == "client.bad_transition"


def test_event_data_by_type() -> None:
    model = parse_event_data(
        "vn.gov.dossier.status-changed",
        {"dossier_code": "000.00.00.H56-250101-0001", "status": 4, "at": datetime.now(VN_TZ)},
    )
    assert model.status is Status.PROCESSING  # type: ignore[attr-defined]
    with pytest.raises(ValidationError) as err:
        parse_event_data("vn.gov.nothing.happened", {})
    assert err.value.field == "type"
    assert "vn.gov.dossier.submitted" in EVENT_MODELS


# -- times and dates: one shared type, a range every conversion survives ----------------------

STATUS_CHANGED = "vn.gov.dossier.status-changed"
CODE = "000.00.00.H56-250101-0001"


def _scan(tp: Any, metadata: list[Any], where: str) -> Iterator[tuple[str, type, list[Any]]]:
    """Every time or date inside a field's type, with the validators that apply to it."""
    if get_origin(tp) is Annotated:
        inner, *extra = get_args(tp)
        yield from _scan(inner, [*metadata, *extra], where)
    elif tp is datetime or tp is date:
        yield where, tp, [m.func for m in metadata if isinstance(m, AfterValidator)]
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, info in tp.model_fields.items():
            yield from _scan(info.annotation, list(info.metadata), f"{where}{name}.")
    else:
        for arg in get_args(tp):
            if arg is not Ellipsis and arg is not NoneType:
                yield from _scan(arg, [], where)


def test_every_time_and_date_of_the_models_uses_the_shared_types() -> None:
    found = {(where.rstrip("."), tp): funcs for model in EVENT_MODELS.values()
             for where, tp, funcs in _scan(model, [], "")}
    assert ("submitted_at", datetime) in found and ("checked_at", datetime) in found
    assert ("record.birth_date", date) in found and ("payer.birth_date", date) in found
    for (where, tp), funcs in found.items():
        shared = model_module._as_vn_time if tp is datetime else model_module._civil_date
        assert shared in funcs, f"{where} ({tp.__name__}) is not VnDateTime / CivilDate"


OUT_OF_RANGE: list[Any] = [
    "0001-01-01T00:00:00", "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00-14:00",
    "9999-12-31T23:59:59-12:00", "9999-12-31T23:59:59", "9999-12-31T23:59:59+14:00",
    "1899-12-31T23:59:59", "1899-12-31T23:59:59+07:00", "2201-01-01T00:00:00",
    "2201-01-01T00:00:00Z", datetime.min, datetime.max, datetime.max.replace(tzinfo=UTC),
    datetime.min.replace(tzinfo=timezone(timedelta(hours=14))),
]


@pytest.mark.parametrize("at", OUT_OF_RANGE)
def test_a_time_outside_the_range_is_refused_naming_the_field(at: Any) -> None:
    with pytest.raises(ValidationError) as err:
        parse_event_data(STATUS_CHANGED, {"dossier_code": CODE, "status": 2, "at": at})
    assert err.value.code == "client.schema_invalid" and err.value.field == "at"
    assert f"{MIN_YEAR} to {MAX_YEAR}" in err.value.message
    with pytest.raises(ValidationError) as err:
        validate_model(Dossier, dossier(due_at=at))
    assert err.value.field == "due_at"


@pytest.mark.parametrize(("event_type", "data", "field"), [
    ("vn.gov.dossier.submitted", dossier(applicant={"identity_number": "001203004567",
                                                    "name": "A", "birth_date": "0001-01-01"}),
     "applicant.birth_date"),
    ("vn.gov.citizen.verification-requested",
     {"identity_number": "001203004567", "name": "A", "birth_date": "9999-12-31"},
     "birth_date"),
    ("vn.gov.citizen.verification-requested",
     {"identity_number": "001203004567", "name": "A", "birth_year": 0}, "birth_year"),
    ("vn.gov.citizen.verification-requested",
     {"identity_number": "001203004567", "name": "A", "birth_year": 10_000}, "birth_year"),
    ("vn.gov.postal.tracking-updated",
     {"dossier_code": CODE, "waybill": "EB1VN", "state": 1, "at": "0001-01-01T00:00:00"},
     "at"),
    ("vn.gov.dossier.progress-reported",
     {"dossier_code": CODE, "officer": "A", "content": "x", "status": 4,
      "at": "2025-01-01T08:00:00", "started_at": "9999-12-31T23:59:59-12:00"}, "started_at"),
])
def test_dates_and_years_outside_the_range_are_refused(event_type: str, data: dict[str, Any],
                                                       field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_event_data(event_type, data)
    assert err.value.code == "client.schema_invalid" and err.value.field == field


# The extremes the model takes, naive (Vietnam time: in 1900 the zone's local mean time, with
# an offset of seconds) and with the largest offsets an RFC 3339 time can carry.
EDGES = ["1900-01-01T00:00:00", "1900-01-01T00:00:00+14:00", "1900-01-01T00:00:00+23:59",
         "2200-12-31T23:59:59.999999", "2200-12-31T23:59:59-12:00",
         "2200-12-31T23:59:59-23:59"]


def test_the_extremes_go_through_every_use_of_a_time(store: Store) -> None:
    portal = WireDates("%Y%m%d%H%M%S", VN_TZ)
    province = WireDates("%d/%m/%Y %H:%M:%S", ZoneInfo("Asia/Ho_Chi_Minh"), "%d/%m/%Y")
    dossier_code = f"000.00.00.H56-250101-{uuid.uuid4().int % 9000 + 1000}"
    for text in EDGES:
        at = parse_event_data(STATUS_CHANGED, {"dossier_code": CODE, "status": 2,
                                               "at": text}).at  # type: ignore[attr-defined]
        assert at.tzinfo is not None
        utc = at.astimezone(UTC)
        assert utc == at and 1899 <= utc.year <= 2201
        assert isinstance(at.timestamp(), float)
        wire = portal.write(at)  # yyyyMMddHHmmss, the portal's fixed width
        assert len(wire) == 14 and wire.isdigit()
        assert portal.read(wire, "at") == at.replace(microsecond=0)
        assert province.read(province.write(at), "at") == at.replace(microsecond=0)
        with store.begin() as tx:
            tx.timeline_add(dossier_code, STATUS_CHANGED, str(uuid.uuid4()), at,
                            source="test", summary={})
    kept = [entry.at for entry in store.timeline(dossier_code)]
    assert len(kept) == len(EDGES) and all(entry.tzinfo is not None for entry in kept)


def test_check_time_is_the_models_range_for_adapters() -> None:
    """An adapter that keeps a system's time before the model sees it (the postal tracking
    rows) checks it with the model's own rule, naming the system's field."""
    at = datetime(2025, 1, 1, 8, tzinfo=VN_TZ)
    assert model_module.check_time(at, "Time") is at
    for wrong in (datetime(1, 1, 1, tzinfo=VN_TZ), datetime(9999, 12, 31, 23, 59, 59)):
        with pytest.raises(ValidationError) as err:
            model_module.check_time(wrong, "Time")
        assert err.value.field == "Time" and err.value.code == "client.schema_invalid"
        assert f"{MIN_YEAR} to {MAX_YEAR}" in err.value.message


# -- JSON's types and Python's: what the entry points and the broker carry, what adapters build -

def _made_by_the_hub() -> dict[str, BaseModel]:
    """One body of each event type as adapters and the intake build them: datetime objects
    (naive, UTC, another offset, microseconds), Decimal amounts, enum members, dates."""
    payer = Applicant(identity_number="001099012345", name="Nguyễn Văn A",
                      birth_date=date(1990, 5, 17))
    return {
        # Not sample_dossier(**changes): model_copy would not validate the changes.
        "vn.gov.dossier.submitted": Dossier(**{
            **dict(npsp_examples.sample_dossier()),
            "received_at": datetime(2025, 1, 1, 9, 15, 30, 123456),
            "fees": (Fee(code="LP", name="Lệ phí", amount=Decimal("75000.50"), kind=2),)}),
        "vn.gov.dossier.status-changed": provincial_examples.sample_status(
            Status.RESOLVED, Status.PROCESSING),
        "vn.gov.dossier.progress-reported": npsp_examples.sample_progress(),
        "vn.gov.payment.requested": PaymentRequest(
            dossier_code=CODE, procedure_code="2.002492", agency_code="000.00.00.H56",
            reference="LT1", amount=Decimal(150000), payer=payer),
        "vn.gov.payment.initiated": PaymentInitiated(
            dossier_code=CODE, reference="LT1", amount=Decimal("150000.5"),
            payment_url="https://pay.example.vn/LT1",
            at=datetime(2025, 1, 1, 8, tzinfo=timezone(timedelta(hours=-5)))),
        "vn.gov.payment.completed": PaymentCompleted(
            dossier_code=CODE, reference="LT1", transaction_id="T1", amount=Decimal(0),
            paid=False, error_code="24", at=datetime(2025, 1, 1, 8, tzinfo=VN_TZ)),
        "vn.gov.postal.pickup-requested": PostalPickup(
            dossier_code=CODE, sender=Party(name="A", address="1 Lê Lợi", phone="0912"),
            receiver=Party(name="B", address="2 Lê Lợi", phone="0913"),
            cod_amount=Decimal("25000")),
        "vn.gov.postal.tracking-updated": PostalTracking(
            dossier_code=CODE, waybill="EB1VN", state=3, at=datetime(2025, 1, 3, tzinfo=UTC)),
        "vn.gov.citizen.verification-requested": CitizenVerification(
            identity_number="123456789", name="Lê C", birth_year=1960),
        "vn.gov.citizen.verified": CitizenVerified(
            dossier_code=CODE, identity_number="001099012345", matched=True,
            checked_at=datetime.now(VN_TZ), record=CitizenRecord(
                identity_number="001099012345", old_identity_number="012345678",
                name=PersonName(family="NGUYỄN", given="A"), gender=Gender.MALE,
                birth_date=date(1990, 5, 17), birth_year=1990,
                current_address=Address(province_code="38", commune_code="16000"))),
    }


def test_what_the_hub_makes_comes_back_from_the_broker() -> None:
    """The JSON form of every body (``model_dump(mode="json")``: times as ISO strings, amounts
    as decimal strings, enums as numbers) is what the consumers validate, after the bytes of
    the envelope: the checks of JSON's types take all of it, and the same model comes back."""
    made = _made_by_the_hub()
    assert set(made) == set(EVENT_MODELS)
    for event_type, body in made.items():
        assert isinstance(body, EVENT_MODELS[event_type])
        env = Envelope.new(source="VN:GOV:000.00.00.G22:lienthong", type=event_type,
                           subject=CODE, data=body.model_dump(mode="json"))
        received = Envelope.from_bytes(env.to_bytes())
        assert parse_event_data(event_type, received.data) == body, event_type
        # Without the fields left at None too (how the population worker sends its answer).
        assert parse_event_data(event_type, body.model_dump(mode="json", exclude_none=True)) \
            == body, event_type


def test_python_objects_are_taken_as_they_are() -> None:
    """Adapters build bodies of Python objects: datetimes, Decimals, enum members, dates. The
    checks of JSON's types are for text and numbers; objects pass as lax mode took them."""
    at = datetime(2025, 1, 2, 9, 0, 0, 500, tzinfo=UTC)
    d = validate_model(Dossier, dossier(
        channel=Channel.POSTAL, status=Status.RECEIVED, submitted_at=at, paid_online=True,
        applicant={"identity_number": "001203004567", "name": "A", "kind": ApplicantKind.AGENCY,
                   "birth_date": date(1990, 1, 1)},
        fees=[Fee(code="F", name="phí", amount=Decimal("1.5"), kind=2, method=1)]))
    assert (d.channel, d.status, d.submitted_at, d.applicant.kind) == (
        Channel.POSTAL, Status.RECEIVED, at, ApplicantKind.AGENCY)
    assert d.fees[0].amount == Decimal("1.5") and d.applicant.birth_date == date(1990, 1, 1)


@pytest.mark.parametrize(("field", "value", "named"), [
    # A date is no time (pydantic made it midnight, of what zone?), a datetime no date of birth.
    ("submitted_at", date(2025, 1, 1), "submitted_at"),
    ("applicant", {"identity_number": "001203004567", "name": "A",
                   "birth_date": datetime(1990, 1, 1)}, "applicant.birth_date"),
    ("submitted_at", 1735689600, "submitted_at"),
    ("channel", "2", "channel"),
    ("paid_online", "yes", "paid_online"),
    ("code", "000.00.00.H56-250101-0001 ", "code"),
])
def test_what_the_contracts_do_not_say_is_refused_from_python_too(field: str, value: Any,
                                                                  named: str) -> None:
    with pytest.raises(ValidationError) as err:
        validate_model(Dossier, dossier(**{field: value}))
    assert err.value.field == named


@pytest.mark.parametrize(("model", "data", "named"), [
    (CitizenRecord, {"identity_number": "001099012345", "old_identity_number": "０１２３４５６７８",
                     "name": {"family": "A", "given": "B"}, "gender": "male",
                     "birth_year": 1990}, "old_identity_number"),
    (Address, {"province_code": "٣٨"}, "province_code"),  # Arabic-Indic digits
    (Address, {"province_code": "38", "district_code": "３８０"}, "district_code"),
    (Address, {"province_code": "38", "commune_code": "1600\u0660"}, "commune_code"),
])
def test_unit_codes_and_old_identity_numbers_are_ascii_digits(model: type[BaseModel],
                                                              data: dict[str, Any],
                                                              named: str) -> None:
    with pytest.raises(ValidationError) as err:
        validate_model(model, data)
    assert err.value.field == named


# -- amounts ---------------------------------------------------------------------------------

AMOUNTS: list[tuple[type[BaseModel], str]] = [
    (Fee, "amount"), (PaymentRequest, "amount"), (PaymentInitiated, "amount"),
    (PaymentCompleted, "amount"), (PostalPickup, "cod_amount")]


def test_every_amount_of_the_models_is_an_amount() -> None:
    """Each Decimal field is one of the two amount types: a new one cannot take pydantic's lax
    Decimal by mistake."""
    found = {(m, name) for m in _models() for name, f in m.model_fields.items()
             if Decimal in (f.annotation, *get_args(f.annotation))}
    assert found == set(AMOUNTS)
    checks = {get_args(t)[1] for t in (model_module.Amount, model_module.SignedAmount)}
    for m, name in AMOUNTS:
        assert checks & set(m.model_fields[name].metadata), (m, name)


def _models() -> Iterator[type[BaseModel]]:
    return (v for v in vars(model_module).values()
            if isinstance(v, type) and issubclass(v, BaseModel) and v is not BaseModel
            and v.__module__ == model_module.__name__)


@pytest.mark.parametrize("text", ["1e3", "1E3", "1.5e2", " 150000", "150000 ", "+150000",
                                  "150_000", ".5", "150000.", "\u0661\u0665\u0660", "0x10",
                                  "Infinity", "NaN", "-0", "-1", "", "1,5", "150000\n"])
def test_an_amount_as_text_is_digits_with_an_optional_fraction(text: str) -> None:
    with pytest.raises(ValidationError) as err:
        validate_model(Fee, {"code": "F", "name": "phí", "amount": text})
    assert err.value.field == "amount" and err.value.code == "client.schema_invalid"


@pytest.mark.parametrize("value", [True, False, None, [], {}, b"1"])
def test_an_amount_is_a_number_or_a_decimal_string(value: Any) -> None:
    with pytest.raises(ValidationError) as err:
        validate_model(Fee, {"code": "F", "name": "phí", "amount": value})
    assert err.value.field == "amount"


def test_an_amount_written_with_an_exponent_is_refused() -> None:
    for literal in (b"1e30", b"1.5E5", b"2e0", b"1e-7"):
        data = parse_object(b'{"code": "F", "name": "ph\\u00ed", "amount": ' + literal + b"}")
        with pytest.raises(ValidationError) as err:
            validate_model(Fee, data)
        assert err.value.field == "amount" and "exponent" in err.value.message
    # Written in digits, the same values are amounts.
    for literal, value in ((b"1000000000000000000000000000000", Decimal(10**30)),
                           (b"150000.0", Decimal("150000")), (b"0.0000001", Decimal("1E-7"))):
        data = parse_object(b'{"code": "F", "name": "F", "amount": ' + literal + b"}")
        assert validate_model(Fee, data).amount == value


def test_amounts_are_written_in_plain_digits() -> None:
    """Whatever an adapter built (a Decimal with an exponent, a negative zero), the JSON form
    is in the contracts' pattern, so that the consumers of the envelope take it back."""
    amounts: tuple[tuple[Any, str], ...] = (
        (Decimal("1E+3"), "1000"), (Decimal("1.5E-7"), "0.00000015"),
        (Decimal("-0.0"), "0.0"), (-0.0, "0.0"), (Decimal("150000.50"), "150000.50"),
        (1e16, "10000000000000000"))
    for amount, text in amounts:
        fee = validate_model(Fee, {"code": "F", "name": "phí", "amount": amount})
        assert fee.model_dump(mode="json")["amount"] == text, amount
        assert validate_model(Fee, fee.model_dump(mode="json")) == fee


def test_a_reported_payment_may_carry_a_sign() -> None:
    data = {"dossier_code": CODE, "reference": "LT1", "transaction_id": "T1", "amount": "-150000",
            "paid": False, "at": "2025-01-01T08:00:00"}
    assert validate_model(PaymentCompleted, data).amount == Decimal(-150000)
    with pytest.raises(ValidationError):
        validate_model(PaymentCompleted, {**data, "amount": "- 1"})
