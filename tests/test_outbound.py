"""The call policy against a real HTTP server on a socket (hub.simulation), and the one
translation of a system's HTTP answers (hub.transport): what each status becomes, and the
system's Retry-After, honoured by the policy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from hub.errors import InvalidMessage, PermanentError, RetryableError
from hub.outbound import CallPolicy, CircuitBreaker, PolicyConfig, TokenBucket
from hub.simulation import Faults, SimulatorServer
from hub.transport import HttpTransport, Outbound, Request, failure, retry_after


class Toy:
    def __init__(self) -> None:
        self.faults = Faults()
        self.calls = 0
        self.retry_after: str | None = None  # sent with each failure
        app = FastAPI()

        @app.get("/thing")
        async def thing() -> JSONResponse:
            self.calls += 1
            status = await self.faults.apply()
            if status:
                headers = {"Retry-After": self.retry_after} if self.retry_after else None
                return JSONResponse({"error": "boom"}, status_code=status, headers=headers)
            return JSONResponse({"ok": True})

        self.server = SimulatorServer(app)


@pytest.fixture
def toy() -> Iterator[Toy]:
    t = Toy()
    t.server.start()
    yield t
    t.server.stop()


def fetch(client: httpx.AsyncClient, url: str):  # type: ignore[no-untyped-def]
    async def once() -> dict[str, object]:
        try:
            r = await client.get(url)
        except httpx.TransportError as exc:
            raise RetryableError(str(exc), code="system.unavailable", origin="system:toy") from None
        if r.status_code >= 500:
            raise RetryableError(f"HTTP {r.status_code}", code="system.unavailable")
        if r.status_code >= 400:
            raise PermanentError(f"HTTP {r.status_code}", code="system.rejected")
        return r.json()  # type: ignore[no-any-return]

    return once


def policy(**kw: float) -> CallPolicy:
    cfg = dict(timeout=30.0, attempts=3, backoff_initial=0.001, backoff_max=0.002,
               breaker_failures=3, breaker_reset=60.0)
    cfg.update(kw)
    return CallPolicy("toy", PolicyConfig(**cfg))  # type: ignore[arg-type]


def test_retries_5xx_then_succeeds(toy: Toy) -> None:
    async def go() -> None:
        toy.faults.fail_next = 2
        async with httpx.AsyncClient() as c:
            assert await policy().call(fetch(c, toy.server.base_url + "/thing")) == {"ok": True}
        assert toy.calls == 3

    asyncio.run(go())


def test_permanent_error_not_retried(toy: Toy) -> None:
    async def go() -> None:
        toy.faults.fail_next, toy.faults.fail_status = 5, 422
        async with httpx.AsyncClient() as c:
            with pytest.raises(PermanentError):
                await policy().call(fetch(c, toy.server.base_url + "/thing"))
        assert toy.calls == 1

    asyncio.run(go())


def test_slow_system_times_out(toy: Toy) -> None:
    async def go() -> None:
        toy.faults.hang = True
        async with httpx.AsyncClient() as c:
            with pytest.raises(RetryableError) as err:
                url = toy.server.base_url + "/thing"
                await policy(timeout=0.05, attempts=1).call(fetch(c, url))
        assert err.value.code == "system.timeout"
        assert err.value.origin == "system:toy"

    asyncio.run(go())


def test_down_system_opens_breaker_then_fails_fast(toy: Toy) -> None:
    async def go() -> None:
        url = toy.server.base_url + "/thing"
        toy.server.pause()
        p = policy()
        async with httpx.AsyncClient() as c:
            with pytest.raises(RetryableError) as err:
                await p.call(fetch(c, url))
            assert err.value.code == "system.unavailable"
            assert p.breaker.state == "open"
            with pytest.raises(RetryableError) as err:
                await p.call(fetch(c, url))
            assert err.value.code == "server.circuit_open"
        toy.server.resume()

    asyncio.run(go())


class Scripted:
    """A system's attempts as a script: each entry an exception to raise or a value to
    return; the outcomes the policy reported, in order."""

    def __init__(self, *script: object) -> None:
        self.script = list(script)
        self.calls = 0
        self.observed: list[str] = []

    async def once(self) -> object:
        step = self.script[self.calls]
        self.calls += 1
        if isinstance(step, BaseException):
            raise step
        return step

    def observe(self, outcome: str, seconds: float) -> None:
        self.observed.append(outcome)


def _busy(retry_after: float | None = None) -> RetryableError:
    return RetryableError("busy", code="system.busy", retry_after=retry_after)


def test_a_call_that_succeeds_at_once_is_one_attempt_told_once() -> None:
    system = Scripted("answer")
    assert asyncio.run(policy().call(system.once, system.observe)) == "answer"
    assert (system.calls, system.observed) == (1, ["ok"])


def test_a_failed_first_attempt_is_retried_as_before_and_counts_as_one() -> None:
    """The first attempt is made outside tenacity: its failure still counts as the first of
    ``attempts`` and its Retry-After sets the first wait."""
    system = Scripted(_busy(retry_after=0.2), _busy(), "answer")

    async def go() -> float:
        started = time.monotonic()
        assert await policy(backoff_max=1.0).call(system.once, system.observe) == "answer"
        return time.monotonic() - started

    assert asyncio.run(go()) >= 0.2
    assert system.calls == 3
    assert system.observed == ["system.busy", "system.busy", "ok"]
    failing = Scripted(_busy(), _busy(), _busy(), "never reached")
    with pytest.raises(RetryableError):
        asyncio.run(policy().call(failing.once, failing.observe))
    assert failing.calls == 3 and failing.observed == ["system.busy"] * 3


@pytest.mark.parametrize("attempts", [1, 0])
def test_a_single_attempt_is_not_retried(attempts: int) -> None:
    system = Scripted(_busy(), "never reached")
    with pytest.raises(RetryableError) as err:
        asyncio.run(policy(attempts=attempts).call(system.once, system.observe))
    assert err.value.code == "system.busy" and system.calls == 1


def test_breaker_half_open_trial() -> None:
    now = [0.0]
    b = CircuitBreaker(2, 10.0, clock=lambda: now[0])
    b.failure()
    assert b.state == "closed"
    b.failure()
    assert b.state == "open"
    with pytest.raises(RetryableError):
        b.before_call("toy")
    now[0] = 11.0
    assert b.state == "half-open"
    b.before_call("toy")  # the one trial call
    with pytest.raises(RetryableError):
        b.before_call("toy")  # a second caller while the trial runs
    b.failure()
    assert b.state == "open"
    now[0] = 22.0
    b.before_call("toy")
    b.success()
    assert b.state == "closed"


def test_token_bucket_limits_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    async def go() -> None:
        bucket = TokenBucket(rate=10.0, burst=2, clock=lambda: now[0])
        real_sleep = asyncio.sleep

        async def fake_sleep(seconds: float) -> None:
            slept.append(seconds)
            now[0] += seconds
            await real_sleep(0)

        asyncio.sleep = fake_sleep  # type: ignore[assignment]
        try:
            for _ in range(4):
                await bucket.acquire()
        finally:
            asyncio.sleep = real_sleep  # type: ignore[assignment]

    asyncio.run(go())
    # Two tokens of burst, then one every 0.1 s.
    assert sum(slept) == pytest.approx(0.2)


def test_unknown_policy_key_is_named() -> None:
    from hub.errors import ConfigError

    with pytest.raises(ConfigError, match="timeoutt"):
        PolicyConfig.from_mapping({"timeoutt": 1})


def outbound(toy: Toy, **kw: float) -> Outbound:
    return Outbound(HttpTransport("toy", "the toy", base_url=toy.server.base_url, timeout=30.0),
                    policy(**kw))


def test_a_short_retry_after_is_waited_out_in_process(toy: Toy) -> None:
    toy.faults.fail_next, toy.faults.fail_status, toy.retry_after = 1, 429, "1"

    async def go() -> float:
        out = outbound(toy, attempts=2, backoff_max=2.0)
        started = time.monotonic()
        try:
            assert (await out.send(Request("thing", "/thing", method="GET"))).body == {"ok": True}
        finally:
            await out.aclose()
        return time.monotonic() - started

    assert asyncio.run(go()) >= 1.0  # not sooner than the system asked
    assert toy.calls == 2


def test_a_long_retry_after_is_left_to_the_retry_tiers(toy: Toy) -> None:
    toy.faults.fail_next, toy.faults.fail_status, toy.retry_after = 5, 503, "120"

    async def go() -> None:
        out = outbound(toy, attempts=3, backoff_max=2.0)
        try:
            with pytest.raises(RetryableError) as err:
                await out.send(Request("thing", "/thing", method="GET"))
        finally:
            await out.aclose()
        assert (err.value.code, err.value.retry_after) == ("system.unavailable", 120.0)
        assert "120s" in err.value.message

    asyncio.run(go())
    assert toy.calls == 1


@pytest.mark.parametrize(("status", "kind", "code"), [
    (408, RetryableError, "system.timeout"),
    (429, RetryableError, "system.busy"),
    (500, RetryableError, "system.unavailable"),
    (502, RetryableError, "system.unavailable"),
    (503, RetryableError, "system.unavailable"),
    (401, PermanentError, "system.unauthorized"),
    (403, PermanentError, "system.unauthorized"),
    (400, PermanentError, "system.rejected"),
    (404, PermanentError, "system.rejected"),
    (409, PermanentError, "system.rejected"),
    (422, PermanentError, "system.rejected"),
    (302, PermanentError, "system.rejected"),
])
def test_the_one_translation(status: int, kind: type[Exception], code: str) -> None:
    error = failure(status, {"Retry-After": "3"}, system="toy", title="the toy", operation="get")
    assert type(error) is kind
    assert error is not None and (error.code, error.origin) == (code, "system:toy")
    assert str(status) in error.message
    if isinstance(error, RetryableError):
        assert error.retry_after == 3.0
    assert failure(200, {}, system="toy", title="the toy", operation="get") is None


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after("120", now) == 120.0
    assert retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now) == 30.0
    assert retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0  # already past
    assert retry_after("soon", now) is None and retry_after(None, now) is None
    assert retry_after("99999999", now) == 86_400.0


def test_garbage_is_invalid_and_not_retried(toy: Toy) -> None:
    async def go() -> None:
        out = Outbound(HttpTransport("toy", "the toy", base_url=toy.server.base_url,
                                     timeout=30.0), policy(attempts=3))
        try:
            with pytest.raises(InvalidMessage) as err:
                await out.send(Request("docs", "/docs", method="GET"))  # an HTML page
        finally:
            await out.aclose()
        assert (err.value.code, err.value.origin) == ("system.bad_reply", "system:toy")
        assert "text/html" in err.value.message

    asyncio.run(go())
