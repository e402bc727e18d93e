"""Citizen data is personal data: what the hub may show of it in logs and error messages.

Identity numbers keep their first four and last two digits (``0012******67``): enough for an
operator to tell two citizens apart in a log, not enough to identify anyone. Names are reduced
to initials. Birth dates are never shown. Error messages can reach dead-letter headers and
operators' screens, so they go through ``scrub`` as well.
"""

from __future__ import annotations

import re
import unicodedata

# Runs of 9 or more digits: identity numbers (12), old ID cards (9), and anything longer that
# could hide one. Shorter runs (years, codes, counters) are left alone.
_DIGIT_RUN = re.compile(r"(?<!\d)\d{9,}(?!\d)")


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
    system's fault string)."""
    return _DIGIT_RUN.sub(lambda m: mask_identity(m.group()), text)
