"""Building blocks for an adapter's declarative maps (``mappings/<name>/*.toml``): reading a
file and checking its tables, with a ``ConfigError`` that names the file and key to fix.

``where`` is how a message names the place (``fields.toml`` or ``fields.toml [receipt]``);
``field`` is what the error's ``field`` carries, so an adapter keeps the convention its operators
and tests know (``fields.toml [dossier].code`` or ``receipt.code``).
"""

from __future__ import annotations

import re
import tomllib
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    RootModel,
    StringConstraints,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from hub.errors import ConfigError
from hub.wiredates import WireDates

E = TypeVar("E", bound=Enum)
M = TypeVar("M", bound=BaseModel)

_NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _element_name(value: str) -> str:
    if not _NCNAME.match(value):
        raise PydanticCustomError("element_name", "should be an XML element name (a letter or "
                                  "_, then letters, digits, _ . or -)")
    return value


ElementName = Annotated[str, AfterValidator(_element_name)]
"""An XML element's local name (an NCName)."""


class Table(BaseModel):
    """A table of a mapping file declared as a model (``checked``): unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def read(path: Path) -> dict[str, Any]:
    """A mapping file, parsed; missing or broken is a ConfigError naming the file."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"the mapping file {path} does not exist; restore it from the repository",
            field=path.name,
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", field=path.name) from None


def checked(model: type[M], doc: dict[str, Any], file: str, *, dotted: bool = False) -> M:
    """A mapping file's tables checked into ``model``; the first problem is a ConfigError at
    ``<file> [<table>].<key>`` (an unknown key at its table, which it names), or at
    ``<table>.<key>`` with the file in the message when ``dotted`` (the adapter's convention;
    a missing key is then named alone, as ``wire_names`` does).
    """
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [str(part) for part in error["loc"]]
        # A model says extra_forbidden, a pydantic dataclass unexpected_keyword_argument.
        if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            message = f"{loc.pop()} is not a known key; remove it or correct its name"
        elif error["type"] == "missing":
            message = "is missing; add it (see the comments in the file)"
        else:
            message = f"{error['msg'][0].lower()}{error['msg'][1:]}, got {error.get('input')!r:.60}"
        if dotted:
            named = loc[-1:] if error["type"] == "missing" else loc
            raise ConfigError(f"{file}: {'.'.join(loc)} {message}",
                              field=".".join(named) or file) from None
        at = f" [{loc[0]}]" + "".join(f".{part}" for part in loc[1:]) if loc else ""
        raise ConfigError(message, field=f"{file}{at}") from None


def load(model: type[M], path: Path, *, dotted: bool = False) -> M:
    """The mapping file ``path`` read and checked into ``model`` (``checked``)."""
    return checked(model, read(path), path.name, dotted=dotted)


def tables(model: type[M], path: Path, *, dotted: bool = False) -> dict[str, M]:
    """The mapping file ``path`` whose every table, whatever its name, is checked into
    ``model`` (an agency's account under its code)."""
    root: type[RootModel[dict[str, M]]] = RootModel[dict[str, model]]  # type: ignore[valid-type]
    return load(root, path, dotted=dotted).root


def table(doc: dict[str, Any], key: str, where: str, *, field: str | None = None) -> dict[str, Any]:
    """The sub-table ``[key]`` of ``doc``; its absence is an error at ``field`` (by default
    ``<where> [<key>]``)."""
    value = doc.get(key)
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where} needs a [{key}] table; add it", field=field or f"{where} [{key}]"
        )
    return value


def exact_names(
    doc: dict[str, Any], key: str, where: str, required: frozenset[str], *, unique: bool = True
) -> dict[str, str]:
    """The table ``[key]`` of hub name -> wire name: exactly the ``required`` keys, each a
    non-empty string, and (when ``unique``) no two names on one wire name."""
    names = table(doc, key, where)
    at = f"{where} [{key}]"
    missing = sorted(required - names.keys())
    unknown = sorted(names.keys() - required)
    if missing:
        raise ConfigError(
            f"lacks {', '.join(missing)}; every one of {sorted(required)} needs a wire name",
            field=at,
        )
    if unknown:
        raise ConfigError(
            f"has unknown keys {unknown}; the known keys are {sorted(required)}",
            field=f"{at}.{unknown[0]}",
        )
    seen: dict[str, str] = {}
    for name, wire in names.items():
        if not isinstance(wire, str) or not wire:
            raise ConfigError(f"must be a non-empty string, got {wire!r}", field=f"{at}.{name}")
        if unique and wire in seen:
            raise ConfigError(
                f"{wire!r} is also the wire name of {seen[wire]!r}; wire names must differ",
                field=f"{at}.{name}",
            )
        seen[wire] = name
    return dict(names)


def wire_names(names: dict[str, Any], keys: tuple[str, ...], where: str) -> dict[str, str]:
    """Each of ``keys`` in ``names`` as a non-empty wire name (extra keys are let be); a gap is
    an error at the key itself."""
    out: dict[str, str] = {}
    for key in keys:
        value = names.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f'{where} needs {key} = "<wire field name>"', field=key)
        out[key] = value
    return out


def member(enum: type[E], name: Any, field: str) -> E:
    """The member of ``enum`` called ``name``."""
    try:
        return enum[name]
    except (KeyError, TypeError):
        raise ConfigError(f"{name!r} is not one of {[m.name for m in enum]}", field=field) from None


def bijection(
    doc: dict[str, Any], key: str, enum: type[E], where: str, *, noun: str = "code"
) -> dict[str, E]:
    """The table ``[key]`` of wire ``noun`` -> member name, covering every member exactly once."""
    out: dict[str, E] = {}
    for word, name in table(doc, key, where).items():
        at = f"{where} [{key}].{word}"
        found = member(enum, name, at)
        if found in out.values():
            raise ConfigError(
                f"{name} is mapped twice; each must have exactly one {noun}", field=at
            )
        out[str(word)] = found
    missing = [m.name for m in enum if m not in out.values()]
    if missing:
        raise ConfigError(f"lacks a {noun} for {missing}", field=f"{where} [{key}]")
    return out


def timezone(name: Any, field: str) -> ZoneInfo:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{name!r} is not an IANA time zone name; use e.g. 'Asia/Ho_Chi_Minh'", field=field
        ) from None


def wire_dates(doc: dict[str, Any], where: str, *, time: str = "format",
               date: str | None = None) -> WireDates:
    """The ``[dates]`` table of ``doc``: the strftime formats under the keys ``time`` (and
    ``date``, for dates without a time) and the ``timezone`` of the wire."""
    table_ = table(doc, "dates", where)
    for key in (time, date) if date else (time,):
        if not isinstance(table_.get(key), str) or "%" not in table_[key]:
            raise ConfigError(
                f"must be a strftime format like '%Y%m%d%H%M%S', got {table_.get(key)!r}",
                field=f"{where} [dates].{key}",
            )
    zone = timezone(table_.get("timezone"), f"{where} [dates].timezone")
    return WireDates(table_[time], zone, table_[date]) if date else WireDates(table_[time], zone)


def distinct_words(doc: dict[str, Any], key: str, names: tuple[str, ...],
                   where: str) -> dict[str, str]:
    """The table ``[key]`` of the words a system writes for each of ``names`` (true and false,
    the kinds of an update), each a string and no two the same."""
    found = table(doc, key, where)
    for name in names:
        if not isinstance(found.get(name), str):
            raise ConfigError("needs a string", field=f"{where} [{key}].{name}")
    if len({found[name] for name in names}) < len(names):
        raise ConfigError(f"needs {' and '.join(names)} as different strings",
                          field=f"{where} [{key}]")
    return {name: found[name] for name in names}


def words(doc: dict[str, Any], read: str, write: str, enum: type[E],
          where: str) -> tuple[dict[str, E], dict[E, str]]:
    """A system's words for the members of ``enum``: ``[<read>]`` maps every word it may send
    (several words may mean one member), ``[<write>]`` the one word written for each member,
    which must be a word of ``[<read>]`` meaning that member, so what the hub writes reads back
    the same."""
    readable = {
        word: member(enum, name, f"{where} [{read}].{word}")
        for word, name in table(doc, read, where).items()
    }
    written: dict[E, str] = {}
    for name, word in table(doc, write, where).items():
        at = f"{where} [{write}].{name}"
        found = member(enum, name, at)
        if readable.get(word) is not found:
            raise ConfigError(
                f"{word!r} must be a word of [{read}] that means {name}, so what the hub "
                "writes reads back the same",
                field=at,
            )
        written[found] = word
    missing = [m.name for m in enum if m not in written]
    if missing:
        raise ConfigError(
            f"lacks a word for {missing}; the hub must be able to write every one of them",
            field=f"{where} [{write}]",
        )
    return readable, written


def wire_time(doc: dict[str, Any], where: str) -> tuple[str, ZoneInfo]:
    """``time_format`` (a strftime format) and ``timezone`` of a fields file, with defaults
    the systems of the hub mostly use."""
    time_format = doc.get("time_format", "%Y%m%d%H%M%S")
    if not isinstance(time_format, str) or "%" not in time_format:
        raise ConfigError(f"{where}: time_format must be a strftime format", field="time_format")
    return time_format, timezone(doc.get("timezone", "Asia/Ho_Chi_Minh"), "timezone")


# -- a value of a table: errors name the key alone (adapters' settings: hub.adapterconfig) --


def string(raw: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    """``raw[key]`` as a string; required when there is no ``default``."""
    value = raw.get(key, default)
    if value is None:
        raise ConfigError(f"is missing from {where}; set it to a string", field=key)
    if not isinstance(value, str):
        raise ConfigError(f"must be a string in {where}, got {value!r:.60}", field=key)
    return value


def listing(key: str, meaning: str) -> AfterValidator:
    """A table's check that it lists ``key`` (a system's code that means ``meaning``)."""

    def listed(table: dict[str, Any]) -> dict[str, Any]:
        if key not in table:
            raise PydanticCustomError("listed", 'must define "{key}" ({meaning})',
                                      {"key": key, "meaning": meaning})
        return table

    return AfterValidator(listed)


WireName = Annotated[str, StringConstraints(min_length=1)]
"""A system's name of a field on its wire."""


class TimedFile(Table):
    """A fields file with the ``time_format`` and ``timezone`` of its system's wire (read by
    ``wire_time``; yyyyMMddHHmmss in Vietnam's time by default)."""

    time_format: str = "%Y%m%d%H%M%S"
    timezone: str = "Asia/Ho_Chi_Minh"
