"""Canonical <-> population database, as plain functions over dicts keyed by element names
(what zeep takes as keyword arguments and what ``zeep.helpers.serialize_object`` gives back).
The element names, date formats and code tables come from the mapping, never from here.

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

from pydantic import ValidationError as PydanticValidationError

from adapters.population.mapping import FILE, Mapping
from adapters.population.records import Address, CitizenRecord, Gender, Relative
from hub import codes
from hub.errors import CodeError, InvalidMessage, RetryableError
from hub.model import CitizenVerification
from hub.privacy import scrub

ORIGIN = "system:population"
_MAX_CODE = 100  # MaType in dancu.xsd
_MAX_NAME = 200  # TenType in dancu.xsd
_EARLIEST_YEAR = 1850


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the request id, the public service, the hub's integration id, the officer."""

    request_id: str
    service_code: str
    integration_code: str
    officer: str


# --- request ---------------------------------------------------------------------------------


def to_request(who: CitizenVerification, caller: Caller, m: Mapping) -> dict[str, Any]:
    """The body of XacThucThongTinCongDan / TraCuuThongTinCongDan for this citizen."""
    req = m.request
    body: dict[str, Any] = {}
    for key in ("request_id", "service_code", "integration_code", "officer"):
        value = getattr(caller, key)
        if not isinstance(value, str) or not value.strip() or len(value) > _MAX_CODE:
            raise InvalidMessage(
                f"must be 1 to {_MAX_CODE} characters, got {len(str(value or ''))}; "
                "check mappings/population/config.toml",
                code="client.mapping_failed",
                field=key,
            )
        body[req[key]] = value.strip()
    try:
        number = codes.parse_identity(who.identity_number, "identity_number", allow_old=True)
    except CodeError as exc:
        raise InvalidMessage(scrub(exc.message), code=exc.code, field=exc.field) from None
    body[req["identity_number" if len(number) == 12 else "old_identity_number"]] = number
    body[req["name"]] = _request_name(who.name)
    body[req["birth"]] = _request_birth(who, m)
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
    req = m.request
    if who.birth_date is not None:
        if who.birth_year is not None and who.birth_year != who.birth_date.year:
            raise InvalidMessage(
                f"{who.birth_year} is not the year of birth_date ({who.birth_date.year}); "
                "send one of them, or both agreeing",
                code="client.schema_invalid",
                field="birth_year",
            )
        _check_year(who.birth_date.year, "birth_date")
        return {req["birth_date"]: who.birth_date.strftime(m.birth_date_format)}
    if who.birth_year is not None:
        _check_year(who.birth_year, "birth_year")
        return {req["birth_year"]: date(who.birth_year, 1, 1).strftime(m.birth_year_format)}
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


def from_request(body: MappingABC[str, Any], m: Mapping) -> tuple[CitizenVerification, Caller]:
    """The inverse of ``to_request`` (round trips, and reading a request in tests)."""
    req = m.request
    caller = Caller(**{key: str(body[req[key]]) for key in
                       ("request_id", "service_code", "integration_code", "officer")})
    number = str(body.get(req["identity_number"]) or body.get(req["old_identity_number"])
                 or "").strip()
    birth = body.get(req["birth"]) or {}
    birth_date = birth_year = None
    if birth.get(req["birth_date"]):
        birth_date = _parse_date(birth[req["birth_date"]], m.birth_date_format, req["birth_date"],
                                 request=True)
    elif birth.get(req["birth_year"]):
        birth_year = _parse_year(birth[req["birth_year"]], m, req["birth_year"], request=True)
    who = CitizenVerification(identity_number=number, name=body[req["name"]],
                              birth_date=birth_date, birth_year=birth_year)
    return who, caller


# --- replies ---------------------------------------------------------------------------------


def exists_from_reply(reply: MappingABC[str, Any] | None, request_id: str, m: Mapping) -> bool:
    """TonTai of a XacThucThongTinCongDan reply."""
    doc = _reply(reply, request_id, m)
    value = doc.get(m.reply["exists"])
    if not isinstance(value, bool):
        raise _malformed(f"must be a boolean, got {type(value).__name__}", m.reply["exists"])
    return value


def exists_to_reply(exists: bool, request_id: str, m: Mapping) -> dict[str, Any]:
    return {m.reply["request_id"]: request_id, m.reply["exists"]: exists}


def record_from_reply(
    reply: MappingABC[str, Any] | None, request_id: str, m: Mapping
) -> CitizenRecord | None:
    """The citizen of a TraCuuThongTinCongDan reply; None when no citizen has these details."""
    doc = _reply(reply, request_id, m)
    citizen = doc.get(m.reply["citizen"])
    if citizen is None:
        return None
    return citizen_to_record(citizen, m)


def record_to_reply(record: CitizenRecord | None, request_id: str, m: Mapping) -> dict[str, Any]:
    doc: dict[str, Any] = {m.reply["request_id"]: request_id}
    if record is not None:
        doc[m.reply["citizen"]] = record_to_citizen(record, m)
    return doc


def _reply(reply: MappingABC[str, Any] | None, request_id: str, m: Mapping) -> MappingABC[str, Any]:
    if not isinstance(reply, MappingABC):
        raise _malformed("the reply body is empty or not an element", "Body")
    echoed = reply.get(m.reply["request_id"])
    # The reply must answer this request, not another one (a proxy mixing up connections).
    if echoed is not None and str(echoed) != request_id:
        raise _malformed(
            f"answers request {echoed!r:.60}, but {request_id!r} was asked",
            m.reply["request_id"],
        )
    return reply


# --- the citizen record ----------------------------------------------------------------------


def citizen_to_record(citizen: MappingABC[str, Any], m: Mapping) -> CitizenRecord:
    c = m.citizen
    if not isinstance(citizen, MappingABC):
        raise _malformed("is not an element", c["identity_number"])
    gender_code = _text(citizen.get(c["gender"]))
    if gender_code is None:
        raise _malformed("is missing", c["gender"])
    gender = m.genders.get(gender_code)
    if gender is None:
        raise InvalidMessage(
            f"gender code {gender_code!r} is not mapped; add it to {FILE} [gender] and replay",
            code="client.mapping_failed",
            field=f"{FILE} [gender]",
        )
    birth_date, birth_year = _reply_birth(citizen.get(c["birth"]), m)
    ethnicity_code = _text(citizen.get(c["ethnicity"]))
    name = citizen.get(c["name"])
    if not isinstance(name, MappingABC):
        raise _malformed("is missing or not an element", c["name"])
    fields: dict[str, Any] = {
        "identity_number": _text(citizen.get(c["identity_number"])),
        "old_identity_number": _text(citizen.get(c["old_identity_number"])),
        "name": {
            "family": _text(name.get(m.name["family"])),
            "middle": _text(name.get(m.name["middle"])),
            "given": _text(name.get(m.name["given"])),
        },
        "gender": Gender(gender),
        "ethnicity_code": ethnicity_code,
        "ethnicity": m.ethnicities.get(ethnicity_code) if ethnicity_code else None,
        "nationality": _text(citizen.get(c["nationality"])),
        "birth_date": birth_date,
        "birth_year": birth_year,
    }
    for key in ("hometown", "permanent_address", "current_address"):
        fields[key] = _address(citizen.get(c[key]), m)
    for key in ("father", "mother", "spouse"):
        fields[key] = _relative(citizen.get(c[key]), m)
    try:
        return CitizenRecord.model_validate(fields)
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        loc = err["loc"]
        where = ".".join(str(p) for p in loc) or "record"
        element = c.get(str(loc[0]), m.reply["citizen"]) if loc else m.reply["citizen"]
        # The value itself may be personal data: name the field and the rule, masked.
        raise _malformed(f"the citizen's {where} is invalid: {scrub(err['msg'])}",
                         element) from None


def record_to_citizen(record: CitizenRecord, m: Mapping) -> dict[str, Any]:
    c = m.citizen
    birth: dict[str, str] = (
        {m.request["birth_date"]: record.birth_date.strftime(m.birth_date_format)}
        if record.birth_date is not None
        else {m.request["birth_year"]: date(record.birth_year, 1, 1).strftime(m.birth_year_format)}
    )
    doc: dict[str, Any] = {
        c["identity_number"]: record.identity_number,
        c["old_identity_number"]: record.old_identity_number,
        c["name"]: {
            m.name["family"]: record.name.family,
            m.name["middle"]: record.name.middle,
            m.name["given"]: record.name.given,
        },
        c["gender"]: m.gender_code(record.gender.value),
        c["ethnicity"]: record.ethnicity_code,
        c["nationality"]: record.nationality,
        c["birth"]: birth,
    }
    for key in ("hometown", "permanent_address", "current_address"):
        address: Address | None = getattr(record, key)
        doc[c[key]] = None if address is None else {
            m.address["province"]: address.province_code,
            m.address["district"]: address.district_code,
            m.address["commune"]: address.commune_code,
            m.address["detail"]: address.detail,
        }
    for key in ("father", "mother", "spouse"):
        relative: Relative | None = getattr(record, key)
        doc[c[key]] = None if relative is None else {
            m.relative["name"]: relative.name,
            m.relative["identity_number"]: relative.identity_number,
        }
    return doc


def _reply_birth(birth: Any, m: Mapping) -> tuple[date | None, int]:
    element = m.citizen["birth"]
    if not isinstance(birth, MappingABC):
        raise _malformed("is missing or not an element", element)
    day = _text(birth.get(m.request["birth_date"]))
    if day is not None:
        parsed = _parse_date(day, m.birth_date_format, m.request["birth_date"], request=False)
        return parsed, parsed.year
    year = _text(birth.get(m.request["birth_year"]))
    if year is not None:
        return None, _parse_year(year, m, m.request["birth_year"], request=False)
    raise _malformed(f"holds neither {m.request['birth_date']} nor {m.request['birth_year']}",
                     element)


def _address(value: Any, m: Mapping) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, MappingABC):
        raise _malformed("is not an element", m.address["province"])
    return {
        "province_code": _text(value.get(m.address["province"])),
        "district_code": _text(value.get(m.address["district"])),
        "commune_code": _text(value.get(m.address["commune"])),
        "detail": _text(value.get(m.address["detail"])),
    }


def _relative(value: Any, m: Mapping) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, MappingABC):
        raise _malformed("is not an element", m.relative["name"])
    return {
        "name": _text(value.get(m.relative["name"])),
        "identity_number": _text(value.get(m.relative["identity_number"])),
    }


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _parse_date(value: Any, fmt: str, element: str, *, request: bool) -> date:
    try:
        return datetime.strptime(str(value), fmt).date()
    except ValueError:
        message = f"is not a date in the format {fmt!r}"
        if request:
            raise InvalidMessage(message, code="client.schema_invalid", field=element) from None
        raise _malformed(message, element) from None


def _parse_year(value: Any, m: Mapping, element: str, *, request: bool) -> int:
    return _parse_date(value, m.birth_year_format, element, request=request).year


def _malformed(message: str, element: str) -> RetryableError:
    return RetryableError(
        f"the population database's reply does not fit the contract: {message}",
        code="system.malformed_reply",
        field=element,
        origin=ORIGIN,
    )
