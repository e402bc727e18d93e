"""What to do with a message whose handling failed, and the headers its copy carries. Pure
functions: no broker, no clock of their own.

An error's class decides (hub.errors): ``InvalidMessage`` parks at once in the invalid queue,
``PermanentError`` in the dead letters, anything else walks the retry tiers (attempt ``n`` that
fails goes to tier ``n``) and, when they are exhausted, the dead letters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub import headers as h
from hub.broker.names import Names
from hub.errors import HubError, InvalidMessage, PermanentError

MAX_HISTORY = 10  # lt-history keeps the last failures only: headers must stay small
MAX_MESSAGE = 300  # characters of an error message kept in headers


@dataclass(frozen=True, slots=True)
class Retry:
    queue: str  # the retry tier to publish the copy to
    attempt: int  # lt-attempt of the copy
    delay: float


@dataclass(frozen=True, slots=True)
class Park:
    queue: str  # P.dead or P.invalid
    code: str
    reason: str  # lt-reason: why the hub gave up
    message: str  # the last error's own message (for lt-last-error and lt-history)


Decision = Retry | Park


def describe(error: BaseException) -> tuple[str, str]:
    """(dotted code, human message) of any error."""
    if isinstance(error, HubError):
        return error.code, _clip(str(error.message))
    return "server.unexpected_error", _clip(f"{type(error).__name__}: {error}")


def decide(
    error: BaseException, attempt: int, names: Names, retry_tiers: Sequence[float]
) -> Decision:
    code, message = describe(error)
    if isinstance(error, InvalidMessage):
        return Park(names.invalid, code, message, message)
    if isinstance(error, PermanentError):
        return Park(names.dead, code, message, message)
    if 0 <= attempt < len(retry_tiers):
        return Retry(names.retry(attempt), attempt + 1, retry_tiers[attempt])
    return Park(
        names.dead,
        code,
        f"gave up after {attempt + 1} attempts ({len(retry_tiers)} retries); last error: "
        f"{message}",
        message,
    )


def attempt_of(headers: Mapping[str, Any] | None) -> int:
    """lt-attempt as an int; a missing or malformed header counts as a first try."""
    if not headers:
        return 0
    value = headers.get(h.ATTEMPT, 0)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _with_failure(
    headers: Mapping[str, Any] | None,
    *,
    attempt: int,
    code: str,
    message: str,
    exchange: str,
    routing_key: str,
    now: datetime,
) -> dict[str, Any]:
    out = dict(headers or {})
    # The first hop records where the message was going; later hops come from P.return or a
    # retry queue and must not overwrite it.
    out.setdefault(h.ORIGINAL_EXCHANGE, exchange)
    out.setdefault(h.ORIGINAL_ROUTING_KEY, routing_key)
    out[h.LAST_ERROR] = f"{code}: {message}"
    history = out.get(h.HISTORY)
    entries = list(history) if isinstance(history, list) else []
    entries.append({"attempt": attempt, "code": code, "message": message, "at": now.isoformat()})
    out[h.HISTORY] = entries[-MAX_HISTORY:]
    return out


def retry_headers(
    headers: Mapping[str, Any] | None,
    decision: Retry,
    *,
    failed_attempt: int,
    code: str,
    message: str,
    return_to: str,
    exchange: str,
    routing_key: str,
    now: datetime,
) -> dict[str, Any]:
    out = _with_failure(
        headers,
        attempt=failed_attempt,
        code=code,
        message=message,
        exchange=exchange,
        routing_key=routing_key,
        now=now,
    )
    out[h.ATTEMPT] = decision.attempt
    out[h.RETURN_TO] = return_to
    out.pop(h.HELD_BEHIND, None)
    # x-death is the broker's own account of earlier dead-lettering; the hub counts attempts
    # itself and a growing x-death only bloats the copy.
    out.pop("x-death", None)
    out.pop("x-first-death-exchange", None)
    out.pop("x-first-death-queue", None)
    out.pop("x-first-death-reason", None)
    return out


def parked_headers(
    headers: Mapping[str, Any] | None,
    decision: Park,
    *,
    failed_attempt: int,
    parked_by: str,
    exchange: str,
    routing_key: str,
    now: datetime,
) -> dict[str, Any]:
    out = _with_failure(
        headers,
        attempt=failed_attempt,
        code=decision.code,
        message=decision.message,
        exchange=exchange,
        routing_key=routing_key,
        now=now,
    )
    out[h.ATTEMPT] = failed_attempt
    out[h.REASON] = decision.reason
    out[h.REASON_CODE] = decision.code
    out[h.PARKED_AT] = now.isoformat()
    out[h.PARKED_BY] = parked_by
    out.pop(h.RETURN_TO, None)
    out.pop(h.HELD_BEHIND, None)
    return out


def held_headers(
    headers: Mapping[str, Any] | None,
    *,
    behind: str,
    return_to: str,
    exchange: str,
    routing_key: str,
) -> dict[str, Any]:
    """Headers of a message sent to a retry tier behind ``behind``, an earlier message of its
    dossier that failed: it did not fail itself, so its attempt count and history stay as
    they were; it comes back to ``return_to`` like a retry."""
    out = dict(headers or {})
    out.setdefault(h.ORIGINAL_EXCHANGE, exchange)
    out.setdefault(h.ORIGINAL_ROUTING_KEY, routing_key)
    out[h.HELD_BEHIND] = behind
    out[h.RETURN_TO] = return_to
    for name in ("x-death", "x-first-death-exchange", "x-first-death-queue",
                 "x-first-death-reason"):
        out.pop(name, None)
    return out
