"""Limits that protect the hub from its callers: requests in flight per process, body size,
rate per client, request time.

The middlewares are plain ASGI (not Starlette's BaseHTTPMiddleware, which copies every body
through a task group and costs more than the rest of the hot path).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.errors import BodyTooLarge, Busy, RateLimited, RequestTimeout, SlowRequest
from hub.api.problems import problem_response

log = logging.getLogger(__name__)

# The SOAP router enforces the same limits itself and answers with SOAP faults, which a SOAP
# client understands where a JSON problem would not.
SOAP_PREFIX = "/soap/"


def _own_limits(scope: Scope) -> bool:
    return scope["type"] == "http" and not str(scope["path"]).startswith(SOAP_PREFIX)


# Probes and metrics are answered whatever the load: a busy process is alive, and the scrape
# during a flood is the one an operator needs. Each costs little and holds no store write.
NOT_CAPPED = frozenset({"/healthz", "/readyz", "/metrics"})
# What a refused client is told to wait (Retry-After, whole seconds): long enough for many of
# the requests in hand to be answered (most take milliseconds), short for a client.
BUSY_RETRY_AFTER_S = 1.0
# A full process logs at most one line this often, with the count refused since the last.
BUSY_LOG_EVERY_S = 10.0


class InFlightLimit:
    """At most ``limit`` requests in the app at once (per process); beyond, 503 ``server.busy``
    with Retry-After at once, nothing read. Under a flood a process otherwise takes every
    request it is offered, and each waits longer behind the others (the event loop, the
    store's writer, memory) until all miss their deadlines; refusing the excess keeps those in
    hand within them, and tells the rest when to come back (to this or another process).

    uvicorn's own ``limit_concurrency`` is no substitute: it counts connections as well as
    requests, so idle keep-alive connections would be refused as load, and its 503 is plain
    text. SOAP requests are capped and refused the same way: overload is the transport's
    answer (503, Retry-After), not a fault of the message. ``NOT_CAPPED`` paths pass."""

    def __init__(self, app: ASGIApp, limit: int, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0  # one event loop per process: no lock
        self._clock = clock
        self._refused = 0
        self._next_log = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in NOT_CAPPED:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self._note_refused()
            busy = Busy(
                f"this process has {self.limit} requests in hand, as many as it takes at once "
                "(Settings.max_in_flight); nothing of this one was read or kept: send it again "
                f"after {BUSY_RETRY_AFTER_S:g} s (see Retry-After)",
                retry_after=BUSY_RETRY_AFTER_S)
            await problem_response(busy, scope["path"])(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    def _note_refused(self) -> None:
        self._refused += 1
        now = self._clock()
        if now >= self._next_log:
            log.warning("refusing requests with 503 server.busy: %d in hand, the cap "
                        "(Settings.max_in_flight); %d refused since the last such line",
                        self.in_flight, self._refused)
            self._refused = 0
            self._next_log = now + BUSY_LOG_EVERY_S


class BodySizeLimit:
    """Refuse bodies larger than ``max_bytes`` with 413 ``client.body_too_large``: at once when
    Content-Length says so, otherwise as soon as the streamed body passes the limit, so an
    unbounded body is never read into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self, size: str) -> BodyTooLarge:
        return BodyTooLarge(
            f"the body is {size} bytes; the hub accepts at most {self.max_bytes}. Send "
            "attachments by reference (url, size, sha256), never inline",
            field="body",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _own_limits(scope):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    # Answered without reading the body; uvicorn closes a connection whose
                    # body was not consumed rather than reusing it.
                    response = problem_response(self._error(str(declared)), scope["path"])
                    await response(scope, receive, send)
                    return
                break
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._error(f"more than {received - 1}")
            return message

        await self.app(scope, limited_receive, send)


class RequestTimeoutLimit:
    """One deadline of ``seconds`` for the whole request, reading its body included. When it
    passes before the answer:

    - the body has not all arrived: 408 ``client.request_timeout``, and the connection is
      closed (a client that announced more bytes than it sends would otherwise hold a request,
      and a worker's attention, for ever);
    - the body is in but the hub has not finished: 503 ``server.timeout``. Work already
      committed stays committed (a store write runs in a thread that cannot be cancelled):
      the client retries with the same Idempotency-Key and learns the message id.

    The SOAP endpoint keeps the same deadline itself, to answer with a fault."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _own_limits(scope):
            await self.app(scope, receive, send)
            return
        started = False
        body_in = False

        async def tracking_receive() -> Message:
            nonlocal body_in
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_in = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            async with asyncio.timeout(self.seconds):
                await self.app(scope, tracking_receive, tracking_send)
        except TimeoutError:
            if started:
                raise
            if not body_in and not await arrived(tracking_receive):
                slow = SlowRequest(
                    f"the request's body did not arrive within {self.seconds:g} s"
                    f"{_announced(scope)}; send the whole request at once", field="body")
                response = problem_response(slow, scope["path"])
                response.headers["connection"] = "close"
                await response(scope, receive, send)
                return
            error = RequestTimeout(
                f"the hub did not answer within {self.seconds:g} s; retry with the same "
                "Idempotency-Key (a request that was kept is answered with its message id)")
            await problem_response(error, scope["path"])(scope, receive, send)


async def arrived(receive: Receive) -> bool:
    """Whether the rest of the request's body is already with the server (received, though
    the app has not asked for it yet): read without waiting, and dropped."""
    try:
        # A deadline already past cancels the first wait; messages already there are taken.
        async with asyncio.timeout(0):
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return True
    except TimeoutError:
        return False


def _announced(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return f" (Content-Length announced {value.decode('latin-1')[:20]} bytes)"
    return ""


# Buckets kept at most, whatever the callers send: keys of unauthenticated requests (the token
# endpoint's client ids) cost memory too. Far above the number of real clients (tens).
MAX_BUCKETS = 10_000
# Longer keys are kept as a prefix and a digest: a key may come from a request's body (the token
# endpoint's client_id), as long as the body limit allows, and the cap counts buckets, not bytes.
MAX_KEY_CHARS = 200
# The bucket that callers beyond MAX_BUCKETS share (no client key can take this name: keys are
# system ids, "token:<id>" and "callback:<system>").
OVERFLOW = "*"


class RateLimiter:
    """A token bucket per client: ``rate`` requests per second on average, bursts of up to
    ``burst`` (one second's worth by default). Per process: with N workers each holds rate/N
    (``lienthong serve`` divides it).

    Memory stays bounded although keys may come from unauthenticated requests: a bucket left
    alone for ``burst / rate`` seconds is full again, the same as no bucket, so it is dropped;
    the buckets are kept in order of last use, so that costs a look at the oldest one per check.
    Beyond ``max_buckets`` buckets still refilling, new keys share one more bucket: a flood of
    made-up keys is then limited as one caller, while the callers already known keep their
    own (refusing new keys outright would lock real clients out during such a flood)."""

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic, *,
                 max_buckets: int = MAX_BUCKETS) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self.max_buckets = max_buckets
        self._clock = clock
        # key -> (tokens, time of the last check), oldest use first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        # The SOAP endpoint checks large requests in worker threads while the event loop checks
        # others: iterating an OrderedDict another thread changes raises.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """The number of buckets held (for tests and metrics)."""
        return len(self._buckets)

    def check(self, key: str) -> None:
        """Take one token for ``key`` or raise ``RateLimited`` with the wait until the next."""
        if self.rate <= 0 or math.isinf(self.rate):
            return
        if len(key) > MAX_KEY_CHARS:
            digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
            key = f"{key[:MAX_KEY_CHARS - 40]}...#{digest}"
        with self._lock:
            self._take(key, self._clock())

    def _take(self, key: str, now: float) -> None:
        buckets = self._buckets
        self._drop_full(now)
        bucket = buckets.get(key)
        if bucket is None and len(buckets) >= self.max_buckets:
            key = OVERFLOW
            bucket = buckets.get(key)
        tokens, last = bucket if bucket is not None else (self.burst, now)
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            buckets[key] = (tokens, now)
            buckets.move_to_end(key)
            wait = (1.0 - tokens) / self.rate
            if key == OVERFLOW:
                raise RateLimited(
                    f"the hub is limiting more than {self.max_buckets} callers at once, and new "
                    f"callers share one budget of {self.rate:g} requests per second, now spent; "
                    f"retry after {wait:.2f} s (see Retry-After)", retry_after=wait)
            raise RateLimited(
                f"{key} sent more than {self.rate:g} requests per second; retry after "
                f"{wait:.2f} s (see Retry-After)",
                retry_after=wait,
            )
        buckets[key] = (tokens - 1.0, now)
        buckets.move_to_end(key)

    def _drop_full(self, now: float) -> None:
        # Tokens never go below zero, so burst / rate seconds after its last use any bucket is
        # full. The oldest use comes first: stop at the first bucket still refilling.
        refilled = now - self.burst / self.rate
        buckets = self._buckets
        while buckets:
            key, (_, last) = next(iter(buckets.items()))
            if last > refilled:
                return
            del buckets[key]
