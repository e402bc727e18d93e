"""Body size, rate per client and request time limits, all from the settings."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_api_support import (  # noqa: F401 - fixtures
    OTHER_KEY,
    Hub,
    clients_config,
    dossier,
    keys_fixture,
    make_hub_fixture,
    new_code,
)

from hub.api.auth import ClientRegistry
from hub.api.errors import RateLimited
from hub.api.limits import MAX_KEY_CHARS, OVERFLOW, RateLimiter
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


def _requests_by_route(hub: Hub) -> dict[tuple[str, str], float]:
    """``lienthong_http_requests_total`` by (route, status), as the app's /metrics shows it."""
    text = hub.http.get("/metrics").text
    return {(s.labels["route"], s.labels["status"]): s.value
            for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "lienthong_http_requests_total"}


def test_a_body_refused_before_routing_is_counted_under_its_route(
        make_hub: Callable[..., Hub], tmp_path: Path) -> None:
    """A 413 answered by its Content-Length, before routing, is counted under its route's
    template, as a routed request is, or under "unmatched": never under its path (a callback's
    path is the caller's to choose, and each label value is a series kept for ever)."""
    hub = make_hub(settings=settings(tmp_path, max_body_bytes=1024))
    tokens = [f"payment-{uuid.uuid4().hex}" for _ in range(3)]
    big = b"x" * 4096
    for token in tokens:
        assert hub.http.post(f"/v1/callbacks/{token}", content=big).status_code == 413
    code = new_code()
    assert hub.http.post(f"/v1/dossiers/{code}/status", content=big).status_code == 413
    assert hub.http.post(f"/nowhere/{tokens[0]}", content=big).status_code == 413

    counted = _requests_by_route(hub)
    assert counted[("/v1/callbacks/{system}", "413")] == 3.0, counted
    assert counted[("/v1/dossiers/{code}/status", "413")] == 1.0, counted
    assert counted[("unmatched", "413")] == 1.0, counted
    paths = [route for route, _ in counted if any(t in route for t in tokens) or code in route]
    assert paths == [], counted


def test_rate_limit_per_client(make_hub: Callable[..., Hub], tmp_path: Path) -> None:
    # The second client may submit dossiers for its own agency, H41.
    config = clients_config()
    config["clients"][1].update(allowed_types=["vn.gov.dossier.*"],
                                allowed_agencies=["000.00.00.H41*"])
    # One request, then one every ten seconds: none refills during the test.
    hub = make_hub(settings=settings(tmp_path, rate_per_client=0.1),
                   registry=ClientRegistry.from_dict(config))
    first = [hub.submit(dossier(new_code())) for _ in range(3)]
    assert [a.status_code for a in first] == [202, 429, 429], [a.text for a in first]
    limited = first[-1]
    assert limited.json()["code"] == "client.rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    # Another client, with its own credentials, has its own bucket: untouched by the first's.
    other = hub.keys.signer(hub.keys.other)
    h41 = new_code("000.00.00.H41")
    answer = hub.submit(dossier(h41, agency_code="000.00.00.H41"), signer=other,
                        headers={"X-API-Key": OTHER_KEY})
    assert answer.status_code == 202, answer.text
    again = hub.submit(dossier(new_code("000.00.00.H41"), agency_code="000.00.00.H41"),
                       signer=other, headers={"X-API-Key": OTHER_KEY})
    assert again.status_code == 429
    # ...and the first client is still limited.
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


def test_buckets_stay_bounded_under_made_up_keys() -> None:
    """The token endpoint's key is the client id of an unauthenticated request: a flood of
    made-up ids must not grow the limiter without bound."""
    now = [0.0]
    limiter = RateLimiter(2.0, clock=lambda: now[0], max_buckets=1000)  # full in 1 s
    # Slow enough that each bucket is full again 1 s later: dropped, so few are ever held.
    for i in range(5000):
        limiter.check(f"token:made-up-{i}")
        now[0] += 0.01
        assert len(limiter) <= 101
    # All at once: never more than the cap, plus the bucket the rest share.
    for i in range(50_000):
        with contextlib.suppress(RateLimited):
            limiter.check(f"token:flood-{i}")
    assert len(limiter) == 1000 + 1
    # Beyond the cap new callers share one budget (and are told so)...
    with pytest.raises(RateLimited, match="more than 1000 callers at once"):
        limiter.check("token:yet-another")
    # ...while a caller already known keeps its own bucket.
    limiter.check("token:flood-0")
    # Once the flood stops, the buckets refill and are dropped.
    now[0] += 1.0
    limiter.check("a")
    assert len(limiter) == 1


def test_long_keys_are_kept_short() -> None:
    limiter = RateLimiter(1.0, clock=lambda: 0.0)
    for i in range(3):
        limiter.check(f"token:{i}" + "x" * 1_000_000)
    # Each long key still has a bucket of its own...
    assert len(limiter) == 3
    assert all(len(key) <= MAX_KEY_CHARS for key in limiter._buckets)
    # ...which it finds again.
    with pytest.raises(RateLimited) as info:
        limiter.check("token:0" + "x" * 1_000_000)
    assert info.value.message.startswith("token:0xxx") and len(info.value.message) < 400


def test_a_known_caller_keeps_its_bucket_during_a_flood() -> None:
    now = [0.0]
    limiter = RateLimiter(1.0, clock=lambda: now[0], max_buckets=10)
    limiter.check("VN:GOV:000.00.00.H56:igate")
    for i in range(100):
        with contextlib.suppress(RateLimited):
            limiter.check(f"token:flood-{i}")
    # Its bucket was not reset by the flood (that would give it a free burst)...
    with pytest.raises(RateLimited, match="igate sent more than"):
        limiter.check("VN:GOV:000.00.00.H56:igate")
    assert OVERFLOW in limiter._buckets and len(limiter) == 11
    # ...and it refills as usual.
    now[0] += 1.0
    limiter.check("VN:GOV:000.00.00.H56:igate")


def test_request_timeout(make_hub: Callable[..., Hub], tmp_path: Path) -> None:
    hub = make_hub(settings=settings(tmp_path, request_timeout=0.3))
    slow = dossier(new_code())
    # Another process holds the database's write lock: the store write waits.
    blocker = sqlite3.connect(tmp_path / "hub.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        answer = hub.submit(slow, headers={"Idempotency-Key": "slow-1"})
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert answer.status_code == 503
    body = answer.json()
    assert body["code"] == "server.timeout" and "Idempotency-Key" in body["message"]
    # Only the wait was given up: the intake kept the job, and wrote it once the lock was
    # released. The same request again (re-signed, same key) gets the original answer: the
    # message kept then, not a second one.
    again = hub.submit(slow, headers={"Idempotency-Key": "slow-1"})
    assert again.status_code == 202, again.text
    kept = again.json()
    assert kept["duplicate"] is True
    assert [item.message_id for item in hub.store.outbox_pending(100, lease=None)] == [
        kept["message_id"]]
    # Another body under that key is refused, naming the message the key stands for.
    other = hub.submit(dossier(new_code()), headers={"Idempotency-Key": "slow-1"})
    assert other.status_code == 409
    assert kept["message_id"] in other.json()["message"]
