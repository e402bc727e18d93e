"""The call policy against a real HTTP server on a socket (hub.simulation)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from hub.errors import PermanentError, RetryableError
from hub.outbound import CallPolicy, CircuitBreaker, PolicyConfig, TokenBucket
from hub.simulation import Faults, SimulatorServer


class Toy:
    def __init__(self) -> None:
        self.faults = Faults()
        self.calls = 0
        app = FastAPI()

        @app.get("/thing")
        async def thing() -> JSONResponse:
            self.calls += 1
            status = await self.faults.apply()
            if status:
                return JSONResponse({"error": "boom"}, status_code=status)
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
    cfg = dict(timeout=1.0, attempts=3, backoff_initial=0.001, backoff_max=0.002,
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
