"""A message checksum over its fields: lowercase hex SHA-256 of the fields' values joined by
``|`` in an order fixed per message kind, with the shared secret in the place the order names
(``SECRET``), as Vietnamese payment gateways sign their messages. The orders are data (a
mapping file's ``[<kind>] order = [...]``, ``Order``), so a gateway's specification
is followed without code."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, create_model
from pydantic_core import PydanticCustomError

from hub import tomlmap
from hub.errors import ClientError
from hub.tomlmap import Table

SECRET = "{secret}"


def _order(fields: tuple[str, ...]) -> tuple[str, ...]:
    if not fields or not all(fields):
        raise PydanticCustomError("order", f'needs order = ["Field", ..., "{SECRET}"]')
    if fields.count(SECRET) != 1:
        raise PydanticCustomError(
            "order", f"must name {SECRET!r} exactly once (where the shared secret goes), found "
            f"it {fields.count(SECRET)} times")
    if len(set(fields)) != len(fields):
        raise PydanticCustomError("order", "lists a field twice")
    return fields


class Order(Table):
    """A message kind's table: the fields hashed, in order, ``SECRET`` among them."""

    order: Annotated[tuple[str, ...], AfterValidator(_order)]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # never on such a wire; do not let True become "True" silently
        raise TypeError("a checksum field cannot be a boolean")
    return str(value)


def parse_orders(doc: dict[str, Any], kinds: Sequence[str],
                 file: str) -> dict[str, tuple[str, ...]]:
    """Each message kind's ``Order`` in a mapping file (``[<kind>] order = [...]``), every kind
    required; errors name the file and the kind's key."""
    fields: dict[str, Any] = {kind: (Order, ...) for kind in kinds}
    found = tomlmap.checked(create_model("Orders", __base__=Table, **fields), doc, file,
                            dotted=True)
    return {kind: getattr(found, kind).order for kind in kinds}


class BadChecksum(ClientError):
    """A call whose checksum does not match: not from the system, or altered."""

    code = "client.bad_checksum"
    http_status = 401


@dataclass(frozen=True)
class FieldChecksum:
    """The checksum a system carries in its ``field`` (MaXacThuc)."""

    field: str

    def plain_text(self, message: Mapping[str, Any], order: Sequence[str], secret: str) -> str:
        """The string that is hashed. Exposed so that tests and operators can compare it with
        the system's own example."""
        return "|".join(secret if name == SECRET else _text(message.get(name)) for name in order)

    def compute(self, message: Mapping[str, Any], order: Sequence[str], secret: str) -> str:
        return hashlib.sha256(self.plain_text(message, order, secret).encode()).hexdigest()

    def sign(self, message: dict[str, Any], order: Sequence[str], secret: str) -> dict[str, Any]:
        """``message`` with its checksum set (a new dict)."""
        return {**message, self.field: self.compute(message, order, secret)}

    def matches(self, message: Mapping[str, Any], order: Sequence[str], secret: str) -> bool:
        given = message.get(self.field)
        if not isinstance(given, str):
            return False
        # Constant-time comparison: the checksum authenticates the system.
        return hmac.compare_digest(given.lower(), self.compute(message, order, secret))
