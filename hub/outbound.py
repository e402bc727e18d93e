"""How the hub calls an external system: a timeout, retries with backoff and jitter for what is
worth retrying, a circuit breaker and a rate limit per destination.

The point of the breaker and the limiter is that a slow or failing system on a peak day fills a
queue rather than the hub's memory: when the breaker is open a call fails fast with a
``RetryableError`` and the message goes to the retry tiers, instead of piling up in-flight
requests against a system that cannot answer.

Calls reach the policy through ``hub.transport``, which translates every failure of a system
into ``RetryableError`` (worth retrying: timeouts, connection refused, 408, 429, 5xx) or
``PermanentError`` (the system refused the content) with ``origin="system:<name>"``;
``CallPolicy`` only retries the former, and never sooner than the system's ``Retry-After``:
a system that asks for more than ``backoff_max`` is left to the retry tiers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from hub import circuits
from hub.errors import HubError, RetryableError

T = TypeVar("T")


@dataclass
class PolicyConfig:
    timeout: float = 10.0  # seconds for one call, connection included
    attempts: int = 3  # in-process tries before the message goes to the retry tiers
    backoff_initial: float = 0.2
    backoff_max: float = 2.0
    breaker_failures: int = 5  # consecutive failures that open the breaker
    breaker_reset: float = 30.0  # seconds open before one trial call is let through
    rate_per_second: float = 0.0  # 0 = unlimited
    burst: int = 10

    @classmethod
    def from_mapping(cls, raw: dict[str, object]) -> PolicyConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(raw) - known
        if unknown:
            from hub.errors import ConfigError

            raise ConfigError(
                f"unknown call policy settings {sorted(unknown)}; known: {sorted(known)}",
                field="policy",
            )
        return cls(**raw)  # type: ignore[arg-type]


@dataclass
class CircuitBreaker:
    """Closed → (N consecutive failures) → open → (after reset) half-open: one trial call;
    success closes, failure opens again."""

    failures_to_open: int
    reset_after: float
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    _trial_running: bool = field(default=False, repr=False)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.reset_after:
            return "half-open"
        return "open"

    def before_call(self, name: str) -> None:
        state = self.state
        if state == "open" or (state == "half-open" and self._trial_running):
            assert self.opened_at is not None
            wait = max(0.0, self.reset_after - (self.clock() - self.opened_at))
            raise RetryableError(
                f"circuit to {name} is open after {self.failures} consecutive failures; "
                f"the next trial call is allowed in {wait:.1f}s",
                code="server.circuit_open",
                origin=f"system:{name}",
            )
        if state == "half-open":
            self._trial_running = True

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial_running = False

    def failure(self) -> None:
        self.failures += 1
        self._trial_running = False
        if self.opened_at is not None or self.failures >= self.failures_to_open:
            self.opened_at = self.clock()


@dataclass
class TokenBucket:
    """Async rate limiter: ``rate`` tokens per second, up to ``burst`` saved."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    tokens: float = -1.0
    updated: float = 0.0

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)
        self.updated = self.clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                self._refill()
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self.tokens) / self.rate)


# Told after each attempt: its outcome ("ok" or the error's code) and its duration in seconds.
Observer = Callable[[str, float], None]


def _retry_after(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome is not None else None
    return (exc.retry_after or 0.0) if isinstance(exc, RetryableError) else 0.0


class CallPolicy:
    """One per destination system; shared by all calls to it."""

    def __init__(self, name: str, config: PolicyConfig | None = None) -> None:
        self.name = name
        self.config = config or PolicyConfig()
        self.breaker = CircuitBreaker(self.config.breaker_failures, self.config.breaker_reset)
        circuits.register(name, self.breaker)  # readiness and metrics (hub.circuits)
        self.limiter = (
            TokenBucket(self.config.rate_per_second, self.config.burst)
            if self.config.rate_per_second > 0
            else None
        )

    def _worth_retrying_now(self, exc: BaseException) -> bool:
        # An open breaker will still be open a few hundred milliseconds later, and a system
        # that asks for a longer wait than the backoff's longest means it: leave both to the
        # retry tiers instead of holding the delivery here.
        return (
            isinstance(exc, RetryableError)
            and exc.code != "server.circuit_open"
            and (exc.retry_after or 0.0) <= self.config.backoff_max
        )

    async def call(self, fn: Callable[[], Awaitable[T]], observe: Observer | None = None) -> T:
        """Run ``fn`` under the policy. ``fn`` makes one attempt and raises RetryableError or
        PermanentError (already translated from its transport's exceptions); ``observe`` is
        told each attempt's outcome and duration, a timeout and an open breaker included."""
        # The first attempt is made before tenacity is: nearly every call succeeds at once, and
        # tenacity's retrying object and its iteration cost twice what the attempt itself costs
        # the hub (docs/performance.md#a-calls-first-attempt-outside-tenacity). A failure
        # tenacity would retry goes to it, which counts it as its first attempt.
        try:
            return await self._observed(fn, observe)
        except BaseException as exc:
            if self.config.attempts <= 1 or not self._worth_retrying_now(exc):
                raise  # what tenacity does: stop after the first, or not worth retrying
            first = exc
        return await self._retrying(fn, observe, first)

    async def _retrying(self, fn: Callable[[], Awaitable[T]], observe: Observer | None,
                        first: BaseException) -> T:
        """The attempts under tenacity. ``first``: the failure of a first attempt already made,
        raised again as tenacity's first attempt (the system is not called again for it), so
        that tenacity waits and counts from it as when it made that attempt itself."""
        cfg = self.config
        backoff = wait_exponential_jitter(
            multiplier=cfg.backoff_initial, max=cfg.backoff_max, jitter=cfg.backoff_initial
        )
        retrying = AsyncRetrying(
            stop=stop_after_attempt(cfg.attempts),
            wait=lambda state: max(backoff(state), _retry_after(state)),
            retry=retry_if_exception(self._worth_retrying_now),
            reraise=True,
        )
        made: BaseException | None = first
        async for attempt in retrying:
            with attempt:
                if made is not None:
                    failure, made = made, None
                    raise failure
                return await self._observed(fn, observe)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _observed(self, fn: Callable[[], Awaitable[T]], observe: Observer | None) -> T:
        if observe is None:
            return await self._once(fn)
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await self._once(fn)
        except HubError as exc:
            outcome = exc.code
            raise
        except Exception:
            outcome = "server.unexpected_error"
            raise
        finally:
            observe(outcome, time.perf_counter() - started)

    async def _once(self, fn: Callable[[], Awaitable[T]]) -> T:
        self.breaker.before_call(self.name)
        if self.limiter is not None:
            await self.limiter.acquire()
        try:
            # asyncio.timeout rather than wait_for: no task of its own per call.
            async with asyncio.timeout(self.config.timeout):
                result = await fn()
        except TimeoutError:
            self.breaker.failure()
            raise RetryableError(
                f"{self.name} did not answer within {self.config.timeout}s",
                code="system.timeout",
                origin=f"system:{self.name}",
            ) from None
        except RetryableError as exc:
            if exc.code != "server.circuit_open":
                self.breaker.failure()
            raise
        except Exception:
            # A refusal of content is not a sign the system is down: do not trip the breaker.
            self.breaker.success()
            raise
        self.breaker.success()
        return result
