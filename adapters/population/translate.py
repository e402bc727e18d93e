"""Canonical -> population database requests, and its replies -> canonical, over dicts keyed by
element names (what zeep takes as keyword arguments and gives back). The element names, date
formats and code tables come from the mapping, never from here.

Errors: bad canonical data (the request cannot be built) is InvalidMessage naming the canonical
field; a reply that does not fit the contract is RetryableError ``system.malformed_reply``
naming the element (the system's fault, possibly a passing one); a code missing from the
mapping is InvalidMessage ``client.mapping_failed`` naming the mapping key to add.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from adapters.population.mapping import FILE, Mapping
from hub import codes
from hub.errors import CodeError, InvalidMessage, RetryableError
from hub.model import CitizenRecord, CitizenVerification
from hub.privacy import scrub

ORIGIN = "system:population"
_MAX_CODE = 100  # MaType in dancu.xsd
_MAX_NAME = 200  # TenType in dancu.xsd
_EARLIEST_YEAR = 1850
CALLER_KEYS = ("request_id", "service_code", "integration_code", "officer")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the request id, the public service, the hub's integration id, the officer."""

    request_id: str
    service_code: str
    integration_code: str
    officer: str


def to_request(who: CitizenVerification, caller: Caller, m: Mapping) -> dict[str, Any]:
    """The body of XacThucThongTinCongDan / TraCuuThongTinCongDan for this citizen."""
    req = m.request
    body: dict[str, Any] = {}
    for key in CALLER_KEYS:
        value = getattr(caller, key)
        if not isinstance(value, str) or not value.strip() or len(value) > _MAX_CODE:
            raise InvalidMessage(
                f"must be 1 to {_MAX_CODE} characters, got {len(str(value or ''))}; "
                "check mappings/population/config.toml",
                code="client.mapping_failed",
                field=key,
            )
        body[getattr(req, key)] = value.strip()
    try:
        number = codes.parse_identity(who.identity_number, "identity_number", allow_old=True)
    except CodeError as exc:
        raise InvalidMessage(scrub(exc.message), code=exc.code, field=exc.field) from None
    body[req.identity_number if len(number) == 12 else req.old_identity_number] = number
    body[req.name] = _request_name(who.name)
    body[req.birth] = _request_birth(who, m)
    return body


def _request_name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidMessage("must be a string", code="client.schema_invalid", field="name")
    # NFC: the same Vietnamese letter can arrive composed or decomposed; the system compares
    # strings, so send the composed form, single-spaced.
    text = " ".join(unicodedata.normalize("NFC", name).split())
    if not text:
        raise InvalidMessage("is empty; the citizen's full name is required",
                             code="client.schema_invalid", field="name")
    if len(text) > _MAX_NAME:
        raise InvalidMessage(f"is {len(text)} characters long; the limit is {_MAX_NAME}",
                             code="client.schema_invalid", field="name")
    return text


def _request_birth(who: CitizenVerification, m: Mapping) -> dict[str, str]:
    if who.birth_date is not None:
        if who.birth_year is not None and who.birth_year != who.birth_date.year:
            raise InvalidMessage(
                f"{who.birth_year} is not the year of birth_date ({who.birth_date.year}); "
                "send one of them, or both agreeing",
                code="client.schema_invalid",
                field="birth_year",
            )
        _check_year(who.birth_date.year, "birth_date")
        return {m.request.birth_date: who.birth_date.strftime(m.dates.birth_date)}
    if who.birth_year is not None:
        _check_year(who.birth_year, "birth_year")
        return {m.request.birth_year: date(who.birth_year, 1, 1).strftime(m.dates.birth_year)}
    raise InvalidMessage(
        "neither birth_date nor birth_year is given; the population database needs one of "
        "them to verify a citizen",
        code="client.schema_invalid",
        field="birth_date",
    )


def _check_year(year: int, field: str) -> None:
    this_year = date.today().year
    if not _EARLIEST_YEAR <= year <= this_year:
        raise InvalidMessage(
            f"the year {year} is out of range; expected {_EARLIEST_YEAR} to {this_year}",
            code="client.schema_invalid",
            field=field,
        )


def exists_from_reply(reply: MappingABC[str, Any] | None, request_id: str, m: Mapping) -> bool:
    """TonTai of a XacThucThongTinCongDan reply."""
    value = _reply(reply, request_id, m).get(m.reply.exists)
    if not isinstance(value, bool):
        raise _malformed(f"must be a boolean, got {type(value).__name__}", m.reply.exists)
    return value


def record_from_reply(
    reply: MappingABC[str, Any] | None, request_id: str, m: Mapping
) -> CitizenRecord | None:
    """The citizen of a TraCuuThongTinCongDan reply; None when no citizen has these details."""
    citizen = _reply(reply, request_id, m).get(m.reply.citizen)
    return None if citizen is None else citizen_to_record(citizen, m)


def _reply(reply: MappingABC[str, Any] | None, request_id: str, m: Mapping) -> MappingABC[str, Any]:
    if not isinstance(reply, MappingABC):
        raise _malformed("the reply body is empty or not an element", "Body")
    echoed = reply.get(m.reply.request_id)
    # The reply must answer this request, not another one (a proxy mixing up connections).
    if echoed is not None and str(echoed) != request_id:
        raise _malformed(f"answers request {echoed!r:.60}, but {request_id!r} was asked",
                         m.reply.request_id)
    return reply


def citizen_to_record(citizen: MappingABC[str, Any], m: Mapping) -> CitizenRecord:
    c = m.citizen
    if not isinstance(citizen, MappingABC):
        raise _malformed("is not an element", c.identity_number)
    gender_code = _text(citizen.get(c.gender))
    if gender_code is None:
        raise _malformed("is missing", c.gender)
    gender = m.genders.get(gender_code)
    if gender is None:
        raise InvalidMessage(
            f"gender code {gender_code!r} is not mapped; add it to {FILE} [gender] and replay",
            code="client.mapping_failed",
            field=f"{FILE} [gender]",
        )
    birth_date, birth_year = _reply_birth(citizen.get(c.birth), m)
    ethnicity_code = _text(citizen.get(c.ethnicity))
    if not isinstance(citizen.get(c.name), MappingABC):
        raise _malformed("is missing or not an element", c.name)
    fields: dict[str, Any] = {
        "identity_number": _text(citizen.get(c.identity_number)),
        "old_identity_number": _text(citizen.get(c.old_identity_number)),
        "name": _nested(citizen, c.name, m.name),
        "gender": gender,
        "ethnicity_code": ethnicity_code,
        "ethnicity": m.ethnicities.get(ethnicity_code) if ethnicity_code else None,
        "nationality": _text(citizen.get(c.nationality)),
        "birth_date": birth_date,
        "birth_year": birth_year,
    }
    for key in ("hometown", "permanent_address", "current_address"):
        fields[key] = _nested(citizen, getattr(c, key), m.address)
    for key in ("father", "mother", "spouse"):
        fields[key] = _nested(citizen, getattr(c, key), m.relative)
    try:
        return CitizenRecord.model_validate(fields)
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        loc = err["loc"]
        where = ".".join(str(p) for p in loc) or "record"
        element = getattr(c, str(loc[0]), m.reply.citizen) if loc else m.reply.citizen
        # The value itself may be personal data: name the field and the rule, masked.
        raise _malformed(f"the citizen's {where} is invalid: {scrub(err['msg'])}",
                         element) from None


def _reply_birth(birth: Any, m: Mapping) -> tuple[date | None, int]:
    if not isinstance(birth, MappingABC):
        raise _malformed("is missing or not an element", m.citizen.birth)
    day = _text(birth.get(m.request.birth_date))
    if day is not None:
        parsed = _parse_date(day, m.dates.birth_date, m.request.birth_date)
        return parsed, parsed.year
    year = _text(birth.get(m.request.birth_year))
    if year is not None:
        return None, _parse_date(year, m.dates.birth_year, m.request.birth_year).year
    raise _malformed(f"holds neither {m.request.birth_date} nor {m.request.birth_year}",
                     m.citizen.birth)


def _nested(parent: MappingABC[str, Any], element: str, names: BaseModel) -> Any:
    """The canonical fields of a child element, by its table of names; None when absent."""
    value = parent.get(element)
    if value is None:
        return None
    if not isinstance(value, MappingABC):
        raise _malformed("is not an element", element)
    return {key: _text(value.get(name)) for key, name in names}


def _text(value: Any) -> str | None:
    text = None if value is None else str(value).strip()
    return text or None


def _parse_date(value: Any, fmt: str, element: str) -> date:
    try:
        return datetime.strptime(str(value), fmt).date()
    except ValueError:
        raise _malformed(f"is not a date in the format {fmt!r}", element) from None


def _malformed(message: str, element: str) -> RetryableError:
    return RetryableError(
        f"the population database's reply does not fit the contract: {message}",
        code="system.malformed_reply",
        field=element,
        origin=ORIGIN,
    )
