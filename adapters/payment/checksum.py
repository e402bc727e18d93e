"""MaXacThuc: the gateway's message checksum. Lowercase hex SHA-256 over the fields' values
joined by ``|`` in an order fixed per message kind (``mappings/payment/checksums.toml``), with
the shared secret in the place the order names."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.payment.mapping import SECRET

FIELD = "MaXacThuc"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # never on this wire; do not let True become "True" silently
        raise TypeError("a checksum field cannot be a boolean")
    return str(value)


def plain_text(message: Mapping[str, Any], order: Sequence[str], secret: str) -> str:
    """The string that is hashed. Exposed so that tests and operators can compare it with the
    gateway's own example."""
    return "|".join(secret if name == SECRET else _text(message.get(name)) for name in order)


def compute(message: Mapping[str, Any], order: Sequence[str], secret: str) -> str:
    return hashlib.sha256(plain_text(message, order, secret).encode("utf-8")).hexdigest()


def sign(message: dict[str, Any], order: Sequence[str], secret: str) -> dict[str, Any]:
    """``message`` with its MaXacThuc set (a new dict)."""
    return {**message, FIELD: compute(message, order, secret)}


def matches(message: Mapping[str, Any], order: Sequence[str], secret: str) -> bool:
    given = message.get(FIELD)
    if not isinstance(given, str):
        return False
    # Constant-time comparison: the checksum authenticates the gateway.
    return hmac.compare_digest(given.lower(), compute(message, order, secret))
