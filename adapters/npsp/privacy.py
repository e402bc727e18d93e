"""How the portal's officers see a citizen's name in the hub's logs (identity numbers are masked
by ``hub.privacy``)."""

from __future__ import annotations


def mask_name(name: str | None) -> str:
    """``Nguyễn Văn An`` -> ``N. V. A.``"""
    if not name:
        return ""
    return " ".join(part[0] + "." for part in name.split())
