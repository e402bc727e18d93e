"""Citizen data is personal data: what the hub may show of it in logs and error messages.

Identity numbers keep their first four and last two digits (``0012******67``): enough for an
operator to tell two citizens apart in a log, not enough to identify anyone. Names are reduced
to initials. Birth dates are never shown. Error messages can reach dead-letter headers and
operators' screens, so they go through ``scrub`` as well.

``mask`` is the one masking of what comes back from a system (``hub.transport``): on top of
``scrub`` it hides the personal values the hub itself sent in the request (a name, an address,
a password), wherever the system's words echo them; ``collect`` finds those values in a request
by the wire names of its personal fields.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable
from typing import Any

# Runs of 9 or more digits: identity numbers (12), old ID cards (9), phone numbers (10-11), and
# anything longer that could hide one. Shorter runs (years, codes, counters) are left alone.
_DIGIT_RUN = re.compile(r"(?<!\d)\d{9,}(?!\d)")
# Phone numbers written in groups ("0912 345 678", "+84 912.345.678"), which no run catches.
_GROUPED_PHONE = re.compile(r"(?<![\d+])(?:\+84[ .-]?|0)\d{1,3}(?:[ .-]\d{2,4}){2,3}(?!\d)")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# A value shorter than this is not masked where it recurs: it would mask unrelated words.
_MIN_PERSONAL = 3


def mask_identity(value: object) -> str:
    """``001090012345`` -> ``0010******45``; ``172345678`` -> ``1723***78``."""
    if value is None:
        return "-"
    text = str(value)
    if len(text) < 8:
        return "*" * len(text)
    return f"{text[:4]}{'*' * (len(text) - 6)}{text[-2:]}"


def initials(name: object) -> str:
    """``Nguyễn Văn An`` -> ``N.V.A.``"""
    if name is None:
        return "-"
    words = str(name).split()
    return "".join(f"{_base_letter(w[0]).upper()}." for w in words) or "-"


def _base_letter(char: str) -> str:
    # Initials without diacritics: "Đ" stays recognisable, the rest loses its tone marks.
    decomposed = unicodedata.normalize("NFD", char)
    return decomposed[0]


def scrub(text: str) -> str:
    """Mask every identity-number-like run of digits in a free text (an error message, a
    system's fault string), phone numbers written in groups and e-mail addresses."""
    text = _EMAIL.sub(lambda m: "***@" + m.group().rpartition("@")[2], text)
    text = _GROUPED_PHONE.sub(_phone, text)
    return _DIGIT_RUN.sub(lambda m: mask_identity(m.group()), text)


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    # Codes written in dotted groups (an agency's "000.00.00") are not phone numbers.
    return mask_identity(digits) if 9 <= len(digits) <= 12 else match.group()


def _masked(value: str) -> str:
    if any(c.isalpha() for c in value):
        return initials(value) if " " in value.strip() else "*" * len(value)
    return mask_identity(re.sub(r"\D", "", value) or value)


def mask(text: str, personal: Iterable[str] = ()) -> str:
    """``text`` with each of the ``personal`` values hidden wherever it occurs (in any case,
    with any spacing between its words: systems upper-case names and fold blanks), then
    scrubbed."""
    for value in sorted({v.strip() for v in personal}, key=len, reverse=True):
        if len(value) < _MIN_PERSONAL:
            continue
        pattern = r"\s+".join(re.escape(word) for word in value.split())
        text = re.sub(pattern, _masked(value), text, flags=re.IGNORECASE)
    return scrub(text)


def collect(document: Any, keys: Collection[str]) -> tuple[str, ...]:
    """The values, at any depth of a JSON-like ``document``, of the members named ``keys``
    (a request's personal fields by their wire names)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in keys and isinstance(value, str | int) and not isinstance(value, bool):
                    found.append(str(value))
                else:
                    walk(value)
        elif isinstance(node, list | tuple):
            for item in node:
                walk(item)

    walk(document)
    return tuple(found)
