"""Limits that protect the hub from its callers: body size, rate per client, request time.

The middlewares are plain ASGI (not Starlette's BaseHTTPMiddleware, which copies every body
through a task group and costs more than the rest of the hot path).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.errors import BodyTooLarge, RateLimited, RequestTimeout
from hub.api.problems import problem_response

# The SOAP router enforces the same limits itself and answers with SOAP faults, which a SOAP
# client understands where a JSON problem would not.
SOAP_PREFIX = "/soap/"


def _own_limits(scope: Scope) -> bool:
    return scope["type"] == "http" and not str(scope["path"]).startswith(SOAP_PREFIX)


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
    """Answer 503 ``server.timeout`` when a request runs longer than ``seconds``. Work already
    committed stays committed (a store write runs in a thread that cannot be cancelled): the
    client retries with the same Idempotency-Key and learns the message id."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _own_limits(scope):
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            async with asyncio.timeout(self.seconds):
                await self.app(scope, receive, tracking_send)
        except TimeoutError:
            if started:
                raise
            error = RequestTimeout(
                f"the hub did not answer within {self.seconds:g} s; retry with the same "
                "Idempotency-Key (a request that was kept is answered with its message id)")
            await problem_response(error, scope["path"])(scope, receive, send)


class RateLimiter:
    """A token bucket per client: ``rate`` requests per second on average, bursts of up to
    ``burst`` (one second's worth by default). Per process: with N workers each holds rate/N
    (``lienthong serve`` divides it)."""

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, key: str) -> None:
        """Take one token for ``key`` or raise ``RateLimited`` with the wait until the next."""
        if self.rate <= 0 or math.isinf(self.rate):
            return
        now = self._clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
            raise RateLimited(
                f"{key} sent more than {self.rate:g} requests per second; retry after "
                f"{wait:.2f} s (see Retry-After)",
                retry_after=wait,
            )
        self._buckets[key] = (tokens - 1.0, now)
