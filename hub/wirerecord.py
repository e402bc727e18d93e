"""Reading and writing a system's JSON records field by field, by the names its mapping gives:
a missing value, a code with blanks around it, a word outside its table or a canonical value
the model refuses is a ``ValidationError`` naming the field as the system wrote it
(``danhSach[1].thoiGian``); ``where`` is the prefix of a nested record's fields."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from hub.errors import CodeError, HubError, ValidationError
from hub.wiredates import WireDates

T = TypeVar("T")
Doc = dict[str, Any]


def put(out: Doc, name: str, value: Any) -> None:
    """``out[name] = value`` unless the value is None: the systems leave an absent field out."""
    if value is not None:
        out[name] = value


def amount(value: Decimal) -> int | float:
    # Dong have no subunit: amounts are whole numbers on the wire.
    return int(value) if value == value.to_integral_value() else float(value)


def when(value: datetime | None, dates: WireDates) -> str | None:
    return None if value is None else dates.write(value)


# A dossier's optional texts and times (hub.model.Dossier), written when they are set.
DOSSIER_TEXTS = ("procedure_name", "field_code", "field_name", "handling_unit", "note")
DOSSIER_TIMES = ("submitted_at", "received_at", "due_at", "resolved_at", "returned_at",
                 "refused_at")


def put_set(out: Doc, names: Mapping[str, str], source: object, attributes: Iterable[str],
            write: Callable[[Any], Any] = lambda value: value) -> None:
    """Each of the ``attributes`` of ``source`` that is set, under its wire name in ``names``,
    as ``write`` writes it (``WireDates.write`` for times)."""
    for name in attributes:
        value = getattr(source, name)
        if value is not None:
            out[names[name]] = write(value)


def required(doc: Mapping[str, Any], name: str, where: str) -> Any:
    value = doc.get(name)
    if value is None or value == "":
        raise ValidationError("is required but missing", field=where + name)
    return value


def code(doc: Mapping[str, Any], name: str, where: str) -> Any:
    """A required code or identity number as the system wrote it, without the blanks around
    it that its system may leave: the canonical model takes a code exactly as the contracts
    write it, with none."""
    value = required(doc, name, where)
    return value.strip() if isinstance(value, str) else value


def optional_str(doc: Mapping[str, Any], name: str, where: str) -> str | None:
    value = doc.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationError(f"must be a string, got {type(value).__name__}", field=where + name)
    return value


def optional_time(doc: Mapping[str, Any], name: str, dates: WireDates,
                  where: str) -> datetime | None:
    value = doc.get(name)
    return None if value in (None, "") else dates.read(value, where + name)


def word(table: Mapping[str, T], value: Any, field: str, what: str) -> T:
    """The meaning of a word of the system's ``table`` (``what``: "submission channel")."""
    if not isinstance(value, str) or value not in table:
        raise ValidationError(
            f"{str(value)[:40]!r} is not a {what}; expected one of {sorted(table)}", field=field
        )
    return table[value]


def counter(doc: Mapping[str, Any], name: str, where: str) -> int | None:
    """An optional non-negative whole number (a system's own sequence number)."""
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"must be a non-negative integer, got {str(value)[:20]!r}",
                              field=where + name)
    return value


def parsed_code(parse: Callable[..., Any], doc: Mapping[str, Any], name: str,
                where: str) -> str | None:
    """An optional code of the hub's (``hub.codes.parse_procedure``...) in its canonical form."""
    value = optional_str(doc, name, where)
    if value is None:
        return None
    try:
        return str(parse(value, where + name, strip=True).value)
    except CodeError as exc:
        raise ValidationError(exc.message, code=exc.code, field=where + name) from None


def validated(build: Callable[[], T], rename: Callable[[str], str]) -> T:
    """A canonical validation (``build``) whose error names the system's field (``rename`` of
    the canonical one)."""
    try:
        return build()
    except HubError as exc:
        raise ValidationError(exc.message, code=exc.code,
                              field=rename(exc.field) if exc.field else None) from None
