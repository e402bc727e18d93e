"""Citizen data is personal data: identity numbers and names are masked before they reach a log
line or an error message."""

from __future__ import annotations


def mask_identity(number: str | None) -> str:
    """``001203004567`` -> ``0012******67``: enough for an operator to tell two apart."""
    if not number:
        return ""
    if len(number) <= 6:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 6) + number[-2:]


def mask_name(name: str | None) -> str:
    """``Nguyễn Văn An`` -> ``N. V. A.``"""
    if not name:
        return ""
    return " ".join(part[0] + "." for part in name.split())
