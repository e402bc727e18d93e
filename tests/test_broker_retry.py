"""Retry decisions and the headers a copy carries (pure functions: no broker); then a retry
through a real worker on RabbitMQ: logged at INFO with destination, tier and reason, and
counted on the worker's /metrics, scraped over HTTP."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hub import headers as h
from hub import runtime
from hub.adapters import AdapterContext, AdapterSpec, Event, Handler
from hub.broker.destinations import Destination
from hub.broker.messages import Outgoing
from hub.broker.names import Names
from hub.broker.publisher import Publisher
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
from hub.envelope import Envelope
from hub.errors import BrokerUnavailable, InvalidMessage, PermanentError, RetryableError
from hub.settings import Settings
from hub.signing import load_signer
from hub.store import Store
from hub.testing.broker import SAMPLE_SOURCE, declared_topology, delete_queues, sample_envelope
from hub.testing.keys import hub_keys, signer_for
from hub.testing.waiting import eventually
from hub.workerhealth import WorkerHealth, serving

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


# -- through a real worker ---------------------------------------------------------------------


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_a_retry_is_logged_and_counted_on_the_workers_metrics(
        settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sign = signer_for(SAMPLE_SOURCE, hub_keys(settings))

    def make_handler(ctx: AdapterContext) -> Handler:
        async def handle(event: Event) -> list[Envelope]:
            if event.envelope.data["i"] == 2:
                raise PermanentError("the system refused the dossier", code="system.rejected")
            if event.attempt == 0:
                raise RetryableError("the system answered 503", code="system.unavailable")
            return []

        return handle

    name = "flaky"
    spec = AdapterSpec(name=name, description="fails once", bindings=["dossier.#"],
                       make_handler=make_handler, ordered=False)
    topology = declared_topology(settings, tmp_path, Destination(name, ("dossier.#",), False))
    caplog.set_level(logging.INFO, logger="hub.broker.consumer")

    async def go(store: Store) -> tuple[Any, dict[Any, float], dict[Any, float], httpx.Response]:
        [worker] = runtime.build_workers(
            settings, [name], store=store, signer=load_signer(settings.keys_dir, settings.hub_id),
            adapters={name: spec}, recorder=False, topology=topology)
        consumer = worker.consumer
        async with serving(WorkerHealth([consumer], store), "127.0.0.1", 0) as port, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            before = _samples((await http.get("/metrics")).text)
            consumer.start()
            await consumer.wait_consuming()
            async with Publisher(settings.broker_urls, settings) as pub:
                for i in (1, 2):
                    await pub.publish(Outgoing.signed(sample_envelope(i), sign,
                                                      topology.names.events))
            await eventually(lambda: consumer.stats.handled == 1 and consumer.stats.dead == 1,
                             15, "one retried and handled, one dead")
            scraped = await http.get("/metrics")
            assert scraped.headers["content-type"].startswith("text/plain")
            after = _samples(scraped.text)
            ready = await http.get("/readyz")
            await worker.stop()
        return consumer, before, after, ready

    try:
        with Store.open(f"sqlite:///{tmp_path / 'hub.db'}") as store:
            consumer, before, after, ready = asyncio.run(go(store))
    finally:
        delete_queues(settings.amqp_url, [q.name for q in topology.queues])

    destination = consumer.destination
    retry = ("lienthong_retries_total", (("destination", destination),
                                         ("reason_code", "system.unavailable"), ("tier", "0")))
    dead = ("lienthong_dead_letters_total", (("destination", destination), ("queue", "dead"),
                                             ("reason_code", "system.rejected")))
    assert after[retry] - before.get(retry, 0.0) == 1.0
    assert after[dead] - before.get(dead, 0.0) == 1.0
    handled = ("lienthong_worker_messages_total",
               (("consumer", consumer.name), ("outcome", "handled")))
    assert after[handled] == 1.0
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"store": "ok", "broker": "ok"}}

    [line] = [r for r in caplog.records if r.getMessage().startswith("retry:")]
    assert line.levelno == logging.INFO
    text = line.getMessage()
    assert f"destination {destination}" in text and "tier 0" in text
    assert "system.unavailable" in text and "the system answered 503" in text
    assert (line.destination, line.tier, line.reason_code) == (  # type: ignore[attr-defined]
        destination, 0, "system.unavailable")


def test_a_handler_breaking_the_contract_after_its_call_is_parked_not_called_again(
        settings: Settings, tmp_path: Path) -> None:
    sign = signer_for(SAMPLE_SOURCE, hub_keys(settings))
    calls: list[str] = []

    def make_handler(ctx: AdapterContext) -> Handler:
        async def handle(event: Event) -> list[Envelope]:
            calls.append(event.envelope.id)
            return None  # type: ignore[return-value]  # the bug under test: no list

        return handle

    name = "sloppy"
    spec = AdapterSpec(name=name, description="returns None", bindings=["dossier.#"],
                       make_handler=make_handler, ordered=False)
    topology = declared_topology(settings, tmp_path, Destination(name, ("dossier.#",), False))

    async def go(store: Store) -> Any:
        [worker] = runtime.build_workers(
            settings, [name], store=store, signer=load_signer(settings.keys_dir, settings.hub_id),
            adapters={name: spec}, recorder=False, topology=topology)
        consumer = worker.consumer
        consumer.start()
        await consumer.wait_consuming()
        async with Publisher(settings.broker_urls, settings) as pub:
            await pub.publish(Outgoing.signed(sample_envelope(1), sign, topology.names.events))
        await eventually(lambda: consumer.stats.dead == 1, 15, "the message parked")
        await worker.stop()
        return consumer

    try:
        with Store.open(f"sqlite:///{tmp_path / 'hub.db'}") as store:
            consumer = asyncio.run(go(store))
    finally:
        delete_queues(settings.amqp_url, [q.name for q in topology.queues])
    assert len(calls) == 1 and consumer.stats.retried == 0
