"""The population adapter's translation run backwards, for its tests only: a request read back
(round trips) and replies written as the system would write them, by the same mapping. The
simulator does not use these: it is written from the system's side, from dancu.xsd."""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel

from adapters.population.mapping import Mapping
from adapters.population.translate import CALLER_KEYS, Caller
from hub.model import CitizenRecord, CitizenVerification


def from_request(body: MappingABC[str, Any], m: Mapping) -> tuple[CitizenVerification, Caller]:
    """The inverse of ``to_request``."""
    req, fmt = m.request, m.dates
    caller = Caller(**{key: str(body[getattr(req, key)]) for key in CALLER_KEYS})
    number = str(body.get(req.identity_number) or body.get(req.old_identity_number) or "")
    birth = body.get(req.birth) or {}
    birth_date = birth_year = None
    if birth.get(req.birth_date):
        birth_date = datetime.strptime(birth[req.birth_date], fmt.birth_date).date()
    elif birth.get(req.birth_year):
        birth_year = datetime.strptime(birth[req.birth_year], fmt.birth_year).year
    who = CitizenVerification(identity_number=number.strip(), name=body[req.name],
                              birth_date=birth_date, birth_year=birth_year)
    return who, caller


def exists_to_reply(exists: bool, request_id: str, m: Mapping) -> dict[str, Any]:
    return {m.reply.request_id: request_id, m.reply.exists: exists}


def record_to_reply(record: CitizenRecord | None, request_id: str, m: Mapping) -> dict[str, Any]:
    doc: dict[str, Any] = {m.reply.request_id: request_id}
    if record is not None:
        doc[m.reply.citizen] = record_to_citizen(record, m)
    return doc


def gender_code(m: Mapping, gender: str) -> str:
    """The system's code of a canonical gender (the first listed, when several map to it)."""
    return next(code for code, value in m.genders.items() if value == gender)


def record_to_citizen(record: CitizenRecord, m: Mapping) -> dict[str, Any]:
    c = m.citizen
    birth: dict[str, str] = (
        {m.request.birth_date: record.birth_date.strftime(m.dates.birth_date)}
        if record.birth_date is not None
        else {m.request.birth_year: date(record.birth_year, 1, 1).strftime(m.dates.birth_year)}
    )
    doc: dict[str, Any] = {
        c.identity_number: record.identity_number,
        c.old_identity_number: record.old_identity_number,
        c.name: _elements(record.name, m.name),
        c.gender: gender_code(m, record.gender.value),
        c.ethnicity: record.ethnicity_code,
        c.nationality: record.nationality,
        c.birth: birth,
    }
    for key in ("hometown", "permanent_address", "current_address"):
        doc[getattr(c, key)] = _elements(getattr(record, key), m.address)
    for key in ("father", "mother", "spouse"):
        doc[getattr(c, key)] = _elements(getattr(record, key), m.relative)
    return doc


def _elements(value: BaseModel | None, names: BaseModel) -> dict[str, Any] | None:
    return None if value is None else {name: getattr(value, key) for key, name in names}


def element_names(m: Mapping) -> set[str]:
    """Every element name the mapping refers to."""
    return {name for table in (m.request, m.reply, m.citizen, m.name, m.address, m.relative)
            for _, name in table}
