"""Personal data in a dead letter's payload, as a viewer may see it (hub.privacy's rules):
identity numbers keep their first four and last two digits, names become initials, birth dates,
phones, emails and addresses are hidden, and any identity-like run of digits in other text is
masked."""

from __future__ import annotations

from typing import Any

from hub.privacy import initials, mask_identity, scrub

IDENTITY_KEYS = frozenset({"identity_number", "old_identity_number", "id_number", "cccd"})
NAME_KEYS = frozenset({"name", "full_name", "given", "middle", "family", "father", "mother",
                       "spouse", "payer", "receiver", "sender", "officer"})
HIDDEN_KEYS = frozenset({"birth_date", "birth_year", "phone", "email", "address",
                         "current_address", "permanent_address", "hometown"})
HIDDEN = "***"


def mask(value: Any, key: str | None = None) -> Any:
    """``value`` with its personal data masked (a new value; the original is untouched)."""
    if isinstance(value, dict):
        return {k: mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, key) for v in value]
    if value is None or isinstance(value, bool):
        return value
    if key in IDENTITY_KEYS:
        return mask_identity(value)
    if key in HIDDEN_KEYS:
        return HIDDEN
    if key in NAME_KEYS and isinstance(value, str):
        return initials(value)
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, int) and len(str(abs(value))) >= 9:
        return mask_identity(value)
    return value
