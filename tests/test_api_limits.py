"""Body size, rate per client and request time limits, all from the settings."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_api_support import (  # noqa: F401 - fixtures
    Hub,
    dossier,
    keys_fixture,
    make_hub_fixture,
    new_code,
)

from hub.api.errors import RateLimited
from hub.api.limits import RateLimiter
from hub.settings import Settings


def settings(tmp_path: Path, **changes: Any) -> Settings:
    return Settings(data_dir=tmp_path, name_prefix=f"lt{uuid.uuid4().hex[:8]}", **changes)


def test_oversized_body_is_refused(make_hub: Callable[..., Hub], tmp_path: Path) -> None:
    hub = make_hub(settings=settings(tmp_path, max_body_bytes=2048))
    big = dossier(new_code(), note="x" * 4000)
    answer = hub.submit(big)
    assert answer.status_code == 413
    body = answer.json()
    assert (body["code"], body["field"]) == ("client.body_too_large", "body")
    assert "2048" in body["message"]
    assert hub.submit(dossier(new_code())).status_code == 202


def test_streamed_body_is_cut_at_the_limit(make_hub: Callable[..., Hub],
                                           tmp_path: Path) -> None:
    # No Content-Length: the body is chunked and counted as it comes (the test client buffers
    # it; test_api_server sends an endless one over a real socket).
    hub = make_hub(settings=settings(tmp_path, max_body_bytes=4096))

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    answer = hub.http.post("/v1/dossiers", content=chunks(),
                           headers={**hub.headers, "X-Signature": "x"})
    assert answer.status_code == 413
    assert answer.json()["code"] == "client.body_too_large"


def test_rate_limit_per_client(make_hub: Callable[..., Hub], tmp_path: Path) -> None:
    hub = make_hub(settings=settings(tmp_path, rate_per_client=3))
    answers = [hub.submit(dossier(new_code())) for _ in range(5)]
    statuses = [a.status_code for a in answers]
    assert statuses.count(202) == 3 and statuses.count(429) == 2, statuses
    limited = answers[-1]
    assert limited.json()["code"] == "client.rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    # Another client has its own bucket.
    hub.headers = {"X-Client-Cert-SHA256": "ab" * 32}  # same client, other credential
    assert hub.submit(dossier(new_code())).status_code == 429


def test_token_bucket() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, clock=lambda: now[0])
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(RateLimited) as info:
        limiter.check("a")
    assert info.value.retry_after == pytest.approx(0.5)
    limiter.check("b")
    now[0] += 0.5
    limiter.check("a")
    assert RateLimiter(0).check("a") is None  # 0 = unlimited


def test_request_timeout(make_hub: Callable[..., Hub], tmp_path: Path) -> None:
    hub = make_hub(settings=settings(tmp_path, request_timeout=0.3))
    # Another process holds the database's write lock: the store write waits.
    blocker = sqlite3.connect(tmp_path / "hub.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        answer = hub.submit(dossier(new_code()), headers={"Idempotency-Key": "slow-1"})
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert answer.status_code == 503
    body = answer.json()
    assert body["code"] == "server.timeout" and "Idempotency-Key" in body["message"]
    # The request was kept once the lock was released; asking again gives its message id.
    again = hub.submit(dossier(new_code()), headers={"Idempotency-Key": "slow-1"})
    assert again.status_code in (202, 409)
