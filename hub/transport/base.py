"""Every call of the hub to an external system: send a request, get a reply.

A ``Transport`` (``hub.transport.http`` over httpx for JSON, ``hub.transport.soap`` over zeep)
makes one attempt and translates its failures, all in one way (``failure``):

- no answer in time, or HTTP 408 -> ``RetryableError`` ``system.timeout``;
- cannot connect, or HTTP 5xx -> ``RetryableError`` ``system.unavailable``;
- HTTP 429 -> ``RetryableError`` ``system.busy``;
- HTTP 401 or 403 -> ``PermanentError`` ``system.unauthorized`` (the hub's credentials);
- any other status outside 2xx -> ``PermanentError`` ``system.rejected``;
- a reply that cannot be decoded -> ``InvalidMessage`` ``system.bad_reply``.

A retryable error carries the system's ``Retry-After`` (``retry_after``, seconds), which the
call policy honours. What a system says about a refusal in its own words reaches a message only
through the adapter's ``explain`` (its code, its text, the field it names), never as the raw
reply; and every error leaving ``Outbound.call`` is masked (``hub.privacy.mask``: the request's
personal values, identity and phone numbers, e-mail addresses), so what is kept in dead-letter
headers and logs names no citizen.

``Outbound`` is what an adapter's client holds: its system's transport under its call policy
(``hub.outbound``), with per-call metrics in the registry a worker serves
(``lienthong_outbound_calls_total{system,operation,outcome}``,
``lienthong_outbound_call_seconds{system,operation}``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar

from prometheus_client import Counter, Histogram

from hub.broker.metrics import REGISTRY
from hub.errors import HubError, InvalidMessage, PermanentError, RetryableError
from hub.outbound import CallPolicy
from hub.privacy import mask

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_SAID = 300  # characters of a system's own words kept in a message
MAX_RETRY_AFTER = 86_400.0  # a longer wait is a system's mistake, not a plan

CALLS = Counter(
    "lienthong_outbound_calls",
    "Calls of the hub to external systems (each attempt), by system, operation and outcome "
    "(ok, or the hub's dotted code of the failure)",
    ["system", "operation", "outcome"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "lienthong_outbound_call_seconds",
    "Duration of each call of the hub to an external system, by system and operation",
    ["system", "operation"],
    registry=REGISTRY,
)


@dataclass(frozen=True)
class Request:
    """One call. ``operation``: the system's name for it (INIT, DongBoHoSoMC, a SOAP
    operation), in messages and metrics. ``body``: the JSON body, or a SOAP operation's
    elements. ``personal``: values of the request that are personal data (a name, an address,
    a password), masked wherever the system's answer echoes them."""

    operation: str
    path: str = ""  # under the transport's base URL, or an absolute URL
    method: str = "POST"
    body: Any = None
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None
    personal: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reply:
    """A decoded answer: a JSON object (HTTP), a SOAP result or fault (``hub.transport.soap``)."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Said:
    """What a system's error reply says in its own words: its text and the field it names."""

    text: str
    field: str | None = None


# Reads a system's error reply (a decoded JSON object) for what it says, or None.
Explain = Callable[[dict[str, Any]], Said | None]


class Transport(Protocol):
    """Makes one attempt of a ``Request`` and returns its ``Reply``, or raises the hub's error
    for its failure (``failure``)."""

    system: str  # the system's short name: origin ``system:<name>``, metrics label

    async def send(self, request: Request) -> Reply: ...

    async def aclose(self) -> None: ...


def origin_of(system: str) -> str:
    return f"system:{system}"


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header in seconds (RFC 9110: delta-seconds or an HTTP date), or None
    when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max((when - (now or datetime.now(UTC))).total_seconds(), 0.0), MAX_RETRY_AFTER)


def failure(
    status: int,
    headers: Mapping[str, str],
    *,
    system: str,
    title: str,
    operation: str,
    said: Said | None = None,
    auth_hint: str = "",
) -> HubError | None:
    """The one translation of an HTTP status into the hub's error, or None for a 2xx.
    ``title`` names the system in messages ("the payment gateway")."""
    if 200 <= status < 300:
        return None
    words = f": {said.text[:MAX_SAID]}" if said and said.text else ""
    where = said.field if said else None
    origin = origin_of(system)
    wait = retry_after(headers.get("retry-after") or headers.get("Retry-After"))
    asked = f"; it asks for {wait:.0f}s before the next call" if wait is not None else ""
    if status in (408, 429) or status >= 500:
        code, why = {
            408: ("system.timeout", "it gave up waiting for the request"),
            429: ("system.busy", "it is over its rate limit"),
        }.get(status, ("system.unavailable", "it is unavailable or overloaded"))
        return RetryableError(
            f"{title} answered {operation} with HTTP {status}{words}; {why}, the call will be "
            f"retried{asked}",
            code=code, field=where, origin=origin, retry_after=wait,
        )
    if status in (401, 403):
        return PermanentError(
            f"{title} refused {operation} with HTTP {status}{words}; check "
            f"{auth_hint or 'the credentials the hub uses for it'}",
            code="system.unauthorized", field=where, origin=origin,
        )
    hint = "; the hub does not follow redirects: set its address" if 300 <= status < 400 else ""
    return PermanentError(
        f"{title} refused {operation} with HTTP {status}{words}{hint}",
        code="system.rejected", field=where, origin=origin,
    )


def bad_reply(system: str, title: str, operation: str, what: str) -> InvalidMessage:
    """A reply the hub cannot decode: it is never read, nor tried again as it is."""
    return InvalidMessage(
        f"{title}'s reply to {operation} {what}; the hub reads no reply it cannot decode",
        code="system.bad_reply", origin=origin_of(system),
    )


def _reply(reply: Reply) -> Reply:
    return reply


class Outbound:
    """The calls of one system: its transport under its call policy, with the per-call metrics
    and the masking of every error that leaves a call."""

    def __init__(self, transport: Transport, policy: CallPolicy) -> None:
        self.transport = transport
        self.policy = policy

    @property
    def system(self) -> str:
        return self.transport.system

    async def call(self, request: Request, read: Callable[[Reply], T]) -> T:
        """Send ``request`` under the policy and return ``read(reply)``. ``read`` is the
        adapter's reading of its system's answer (its own reply codes, its contract): what it
        raises is retried, or not, like the transport's own failures."""

        async def once() -> T:
            return read(await self.transport.send(request))

        def observe(outcome: str, seconds: float) -> None:
            CALLS.labels(self.system, request.operation, outcome).inc()
            LATENCY.labels(self.system, request.operation).observe(seconds)
            log.debug("%s %s: %s in %.3fs", self.system, request.operation, outcome, seconds)

        try:
            return await self.policy.call(once, observe)
        except HubError as exc:
            exc.message = mask(exc.message, request.personal)
            exc.args = (exc.message,)
            raise

    async def send(self, request: Request) -> Reply:
        return await self.call(request, _reply)

    async def aclose(self) -> None:
        await self.transport.aclose()
