"""Retry decisions and the headers a copy carries (pure functions: no broker)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub import headers as h
from hub.broker.names import Names
from hub.broker.retry import (
    MAX_HISTORY,
    MAX_MESSAGE,
    Park,
    Retry,
    attempt_of,
    decide,
    describe,
    parked_headers,
    retry_headers,
)
from hub.errors import BrokerUnavailable, InvalidMessage, PermanentError, RetryableError

N = Names("p")
TIERS = [0.2, 0.4, 0.6]
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize("attempt", [0, 1, 2])
def test_a_retryable_failure_goes_to_the_tier_of_its_attempt(attempt: int) -> None:
    decision = decide(RetryableError("down"), attempt, N, TIERS)
    assert decision == Retry(f"p.retry.{attempt}", attempt + 1, TIERS[attempt])


def test_an_unexpected_exception_is_retried_like_a_retryable_one() -> None:
    assert decide(KeyError("x"), 0, N, TIERS) == Retry("p.retry.0", 1, 0.2)
    assert decide(BrokerUnavailable("gone"), 1, N, TIERS) == Retry("p.retry.1", 2, 0.4)


def test_after_the_last_tier_the_message_is_dead() -> None:
    decision = decide(RetryableError("down", code="system.unavailable"), 3, N, TIERS)
    assert isinstance(decision, Park)
    assert decision.queue == "p.dead"
    assert decision.code == "system.unavailable"
    assert decision.reason == "gave up after 4 attempts (3 retries); last error: down"
    assert decision.message == "down"


def test_permanent_and_invalid_are_parked_at_once_whatever_the_attempt() -> None:
    assert decide(PermanentError("no", code="system.rejected"), 0, N, TIERS) == Park(
        "p.dead", "system.rejected", "no", "no"
    )
    assert decide(InvalidMessage("bad", code="client.bad_signature"), 1, N, TIERS) == Park(
        "p.invalid", "client.bad_signature", "bad", "bad"
    )


def test_no_tiers_means_straight_to_the_dead_letters() -> None:
    assert decide(RetryableError("x"), 0, N, []).queue == "p.dead"


def test_describe_keeps_messages_short() -> None:
    code, message = describe(ValueError("x" * 1000))
    assert code == "server.unexpected_error"
    assert message.startswith("ValueError: x") and len(message) == MAX_MESSAGE


@pytest.mark.parametrize(
    ("headers", "expected"),
    [(None, 0), ({}, 0), ({h.ATTEMPT: 2}, 2), ({h.ATTEMPT: b"3"}, 3), ({h.ATTEMPT: "x"}, 0),
     ({h.ATTEMPT: -4}, 0)],
)
def test_attempt_of_reads_the_header_defensively(headers: dict[str, object] | None,
                                                 expected: int) -> None:
    assert attempt_of(headers) == expected


def test_a_retry_copy_records_the_failure_and_where_it_goes_back() -> None:
    original = {h.SIGNATURE: "sig", h.ATTEMPT: 0, "x-death": [{"queue": "q"}]}
    out = retry_headers(
        original, Retry("p.retry.0", 1, 0.2), failed_attempt=0, code="system.unavailable",
        message="down", return_to="p.work.a", exchange="p.events", routing_key="a.b.c.d", now=NOW,
    )
    assert out[h.ATTEMPT] == 1
    assert out[h.RETURN_TO] == "p.work.a"
    assert out[h.SIGNATURE] == "sig"  # the hub does not re-sign its retries
    assert out[h.LAST_ERROR] == "system.unavailable: down"
    assert out[h.ORIGINAL_EXCHANGE] == "p.events"
    assert out[h.ORIGINAL_ROUTING_KEY] == "a.b.c.d"
    assert out[h.HISTORY] == [
        {"attempt": 0, "code": "system.unavailable", "message": "down", "at": NOW.isoformat()}
    ]
    assert "x-death" not in out
    assert original[h.ATTEMPT] == 0  # the delivery's headers are not changed


def test_later_hops_keep_the_original_routing_and_a_bounded_history() -> None:
    headers: dict[str, object] = {h.ATTEMPT: 0}
    for attempt in range(MAX_HISTORY + 5):
        headers = retry_headers(
            headers, Retry("p.retry.0", attempt + 1, 0.2), failed_attempt=attempt, code="c",
            message=f"failure {attempt}", return_to="p.work.a",
            exchange="p.events" if attempt == 0 else "p.return",
            routing_key="a.b.c.d" if attempt == 0 else "p.retry.0", now=NOW,
        )
    assert headers[h.ORIGINAL_EXCHANGE] == "p.events"
    assert headers[h.ORIGINAL_ROUTING_KEY] == "a.b.c.d"
    history = headers[h.HISTORY]
    assert isinstance(history, list) and len(history) == MAX_HISTORY
    assert history[-1]["message"] == f"failure {MAX_HISTORY + 4}"


def test_a_parked_copy_says_why_when_and_by_whom() -> None:
    decision = Park("p.dead", "system.rejected", "refused", "refused")
    out = parked_headers(
        {h.ATTEMPT: 2, h.RETURN_TO: "p.work.a"}, decision, failed_attempt=2, parked_by="w1",
        exchange="p.return", routing_key="p.retry.1", now=NOW,
    )
    assert out[h.REASON] == "refused" and out[h.REASON_CODE] == "system.rejected"
    assert out[h.PARKED_AT] == NOW.isoformat() and out[h.PARKED_BY] == "w1"
    assert out[h.ATTEMPT] == 2
    assert h.RETURN_TO not in out
    assert out[h.HISTORY][-1]["attempt"] == 2
