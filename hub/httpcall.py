"""One HTTP exchange with an external system that answers JSON, with its failures translated at
the boundary into the hub's errors (see ``hub.outbound``): connection refused, timeouts, 5xx
and 429 are ``RetryableError`` (the system is down or busy), another 4xx is ``PermanentError``
(it refused the content), and a reply that is not a JSON object is ``RetryableError``
``system.bad_reply`` (systems behind proxies answer outages with an HTML page and status 200),
as is one naming a member twice (a checksum checked over one of the two values would vouch for
a reply another reader reads differently; see ``hub.jsonbody``).

What the system's own reply codes mean stays the adapter's business.
"""

from __future__ import annotations

from typing import Any

import httpx

from hub.errors import PermanentError, RetryableError
from hub.jsonbody import DuplicateMember, loads_unique
from hub.privacy import scrub


async def request_json(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    system: str,
    origin: str,
    json_body: Any = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Send one request and return the reply's JSON object. ``system`` names the system in
    messages ("the parcel service"); ``origin`` is ``system:<name>``."""
    try:
        response = await http.request(method, path, json=json_body, params=params)
    except httpx.TimeoutException as exc:
        raise RetryableError(
            f"{system} did not answer in time ({type(exc).__name__})",
            code="system.timeout",
            origin=origin,
        ) from None
    except httpx.TransportError as exc:
        raise RetryableError(
            f"{system} at {http.base_url} cannot be reached: {exc!r:.200}",
            code="system.unavailable",
            origin=origin,
        ) from None
    status = response.status_code
    # Reply texts may echo what was sent: identity numbers are masked before they are kept.
    if status >= 500 or status == 429:
        raise RetryableError(
            f"{system} answered HTTP {status} on {path}: {scrub(response.text[:200])}",
            code="system.unavailable",
            origin=origin,
        )
    if status >= 400:
        raise PermanentError(
            f"{system} refused the request with HTTP {status} on {path}: "
            f"{scrub(response.text[:200])}",
            code="system.rejected",
            origin=origin,
        )
    try:
        reply = loads_unique(response.content)
    except DuplicateMember as exc:
        raise RetryableError(
            f"{system}'s reply on {path} names the member {exc.field} twice; the hub reads no "
            "reply whose readers could disagree",
            code="system.bad_reply",
            origin=origin,
        ) from None
    except ValueError:
        raise RetryableError(
            f"{system}'s reply on {path} is not JSON: {scrub(response.text[:120])}",
            code="system.bad_reply",
            origin=origin,
        ) from None
    if not isinstance(reply, dict):
        raise RetryableError(
            f"{system}'s reply on {path} is not a JSON object",
            code="system.bad_reply",
            origin=origin,
        )
    return reply
