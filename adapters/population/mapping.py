"""Loads and checks ``mappings/population/mapping.toml``: element names, date formats and code
tables. Every problem is a ConfigError naming the file, the section and the key."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.errors import ConfigError

FILE = "mapping.toml"
GENDERS = ("male", "female", "unknown")
_NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")

# Section -> the canonical keys it must map.
_SECTIONS: dict[str, tuple[str, ...]] = {
    "request": (
        "request_id", "service_code", "integration_code", "officer", "identity_number",
        "old_identity_number", "name", "birth", "birth_date", "birth_year",
    ),
    "reply": ("request_id", "exists", "citizen"),
    "citizen": (
        "identity_number", "old_identity_number", "name", "gender", "ethnicity", "nationality",
        "birth", "hometown", "permanent_address", "current_address", "father", "mother",
        "spouse",
    ),
    "name": ("family", "middle", "given"),
    "address": ("province", "district", "commune", "detail"),
    "relative": ("name", "identity_number"),
}


@dataclass(frozen=True, slots=True)
class Mapping:
    request: dict[str, str]
    reply: dict[str, str]
    citizen: dict[str, str]
    name: dict[str, str]
    address: dict[str, str]
    relative: dict[str, str]
    birth_date_format: str
    birth_year_format: str
    genders: dict[str, str]  # system code -> canonical gender
    ethnicities: dict[str, str]  # system code -> name

    def element_names(self) -> set[str]:
        """Every element name the mapping refers to (checked against the XSD in tests)."""
        names: set[str] = set()
        for section in (self.request, self.reply, self.citizen, self.name, self.address,
                        self.relative):
            names.update(section.values())
        return names

    def gender_code(self, gender: str) -> str:
        """The system's code of a canonical gender (the first listed, when several map to it)."""
        for code, value in self.genders.items():
            if value == gender:
                return code
        raise ConfigError(
            f"no code in [gender] maps to {gender!r}; add one to {FILE}",
            field=f"{FILE} [gender]",
        )


def load_mapping(directory: Path) -> Mapping:
    path = directory / FILE
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"{path} does not exist; the population adapter needs its mapping file",
            field=FILE,
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", field=FILE) from None
    return parse_mapping(raw)


def parse_mapping(raw: dict[str, Any]) -> Mapping:
    sections = {name: _names(raw, name, keys) for name, keys in _SECTIONS.items()}
    dates = _table(raw, "dates")
    formats = {key: _string(dates, "dates", key) for key in ("birth_date", "birth_year")}
    genders = {str(code): _string(_table(raw, "gender"), "gender", str(code))
               for code in _table(raw, "gender")}
    for code, value in genders.items():
        if value not in GENDERS:
            raise ConfigError(
                f"{value!r} is not a canonical gender; use one of {', '.join(GENDERS)}",
                field=f"{FILE} [gender].{code}",
            )
    if not genders:
        raise ConfigError("is empty; map at least the system's gender codes",
                          field=f"{FILE} [gender]")
    ethnicity_table = raw.get("ethnicity", {})
    if not isinstance(ethnicity_table, dict):
        raise ConfigError("must be a table of code = name", field=f"{FILE} [ethnicity]")
    ethnicities = {str(code): _string(ethnicity_table, "ethnicity", str(code))
                   for code in ethnicity_table}
    return Mapping(
        request=sections["request"],
        reply=sections["reply"],
        citizen=sections["citizen"],
        name=sections["name"],
        address=sections["address"],
        relative=sections["relative"],
        birth_date_format=formats["birth_date"],
        birth_year_format=formats["birth_year"],
        genders=genders,
        ethnicities=ethnicities,
    )


def _table(raw: dict[str, Any], section: str) -> dict[str, Any]:
    table = raw.get(section)
    if not isinstance(table, dict):
        raise ConfigError(f"is missing or not a table; see the comments in {FILE}",
                          field=f"{FILE} [{section}]")
    return table


def _string(table: dict[str, Any], section: str, key: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"must be a non-empty string, got {value!r}",
                          field=f"{FILE} [{section}].{key}")
    return value


def _names(raw: dict[str, Any], section: str, keys: tuple[str, ...]) -> dict[str, str]:
    table = _table(raw, section)
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise ConfigError(f"unknown keys {unknown}; known: {list(keys)}",
                          field=f"{FILE} [{section}]")
    out: dict[str, str] = {}
    for key in keys:
        if key not in table:
            raise ConfigError("is missing; every canonical field needs an element name",
                              field=f"{FILE} [{section}].{key}")
        value = _string(table, section, key)
        if not _NCNAME.match(value):
            raise ConfigError(f"{value!r} is not an XML element name",
                              field=f"{FILE} [{section}].{key}")
        out[key] = value
    return out
