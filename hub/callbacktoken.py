"""A callback a system authenticates with a shared token in a header (the value of an
environment variable the adapter's settings name), compared in constant time. Until the
variable is set the callback is shut: never open for want of a secret, since anyone could
otherwise push reports."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from hub.errors import ClientError, SecretMissing


class BadToken(ClientError):
    code = "client.bad_token"
    http_status = 401


def check_token(headers: Mapping[str, str], header: str, expected: str | None, variable: str,
                what: str) -> None:
    """``SecretMissing`` when ``expected`` (the value of ``variable``) is not set, ``BadToken``
    when ``header`` does not carry it; ``what`` names the callback ("the postal webhook")."""
    if expected is None:
        raise SecretMissing(
            f"{what} is shut: its shared token is not configured; the hub's operator sets the "
            f"environment variable {variable} for the hub and restarts it", field=header)
    name = header.lower()
    given = next((v for k, v in headers.items() if k.lower() == name), "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise BadToken(f"{what} lacks the shared token in header {header} (or it is wrong)",
                       field=header)
