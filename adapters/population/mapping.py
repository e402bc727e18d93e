"""``mappings/population/mapping.toml`` as a model: element names, date formats and code
tables. Every problem is a ConfigError naming the file, the table and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from hub import tomlmap
from hub.model import Gender
from hub.tomlmap import ElementName, Table

FILE = "mapping.toml"
Format = Annotated[str, Field(min_length=1)]


class Request(Table):
    request_id: ElementName
    service_code: ElementName
    integration_code: ElementName
    officer: ElementName
    identity_number: ElementName
    old_identity_number: ElementName
    name: ElementName
    birth: ElementName
    birth_date: ElementName
    birth_year: ElementName


class Reply(Table):
    request_id: ElementName
    exists: ElementName
    citizen: ElementName


class Citizen(Table):
    identity_number: ElementName
    old_identity_number: ElementName
    name: ElementName
    gender: ElementName
    ethnicity: ElementName
    nationality: ElementName
    birth: ElementName
    hometown: ElementName
    permanent_address: ElementName
    current_address: ElementName
    father: ElementName
    mother: ElementName
    spouse: ElementName


class Name(Table):
    family: ElementName
    middle: ElementName
    given: ElementName


class Address(Table):
    province_code: ElementName
    district_code: ElementName
    commune_code: ElementName
    detail: ElementName


class Relative(Table):
    name: ElementName
    identity_number: ElementName


class Dates(Table):
    birth_date: Format
    birth_year: Format


class Mapping(Table):
    request: Request
    reply: Reply
    citizen: Citizen
    name: Name
    address: Address
    relative: Relative
    dates: Dates
    genders: Annotated[dict[str, Gender], Field(alias="gender", min_length=1)]
    ethnicities: Annotated[dict[str, str], Field(alias="ethnicity", default_factory=dict)]


def load_mapping(directory: Path) -> Mapping:
    return parse_mapping(tomlmap.read(directory / FILE))


def parse_mapping(raw: dict[str, object]) -> Mapping:
    return tomlmap.checked(Mapping, raw, FILE)
