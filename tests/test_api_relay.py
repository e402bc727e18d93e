"""The outbox relay against the real broker: accepted messages are published with confirms and
marked published; with the broker unreachable intake still answers 202 and the relay publishes
when the broker is back."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import pytest
from conftest import rabbitmqctl, wait_for
from test_api_support import (  # noqa: F401 - fixtures
    Hub,
    declare_events,
    dossier,
    drain,
    keys_fixture,
    make_hub_fixture,
    new_code,
)

from hub.api.intake import UPSTREAM_PROOF
from hub.envelope import Envelope
from hub.settings import Settings


def published_ids(settings: Settings, queue: str, into: set[str]) -> set[str]:
    for props, body in drain(settings.amqp_url, queue):
        env = Envelope.from_bytes(body)
        assert props.message_id == env.id and props.type == env.type
        assert props.headers["lt-signature"] and props.headers[UPSTREAM_PROOF]
        into.add(env.id)
    return into


def test_accepted_messages_are_published(make_hub: Callable[..., Hub], settings: Settings,
                                         store_url: str) -> None:
    queue = declare_events(settings.amqp_url, settings.name_prefix)
    hub = make_hub(store_url, settings=settings, relay=True, relay_poll_interval=0.2)
    wait_for(lambda: hub.http.get("/readyz").status_code == 200, message="relay connected")
    ids = {hub.submit(dossier(new_code())).json()["message_id"] for _ in range(5)}
    seen: set[str] = set()
    wait_for(lambda: published_ids(settings, queue, seen) >= ids, message="publication")
    wait_for(lambda: hub.outbox_count() == 0, message="rows marked published")
    assert "lienthong_outbox_published_total 5.0" in hub.http.get("/metrics").text


def test_broker_down_then_back(make_hub: Callable[..., Hub], settings: Settings,
                               store_url: str) -> None:
    queue = declare_events(settings.amqp_url, settings.name_prefix)
    nowhere = settings.model_copy(update={
        "amqp_url": f"amqp://guest:guest@127.0.0.1:5672/{quote('lt-no-such-vhost', safe='')}"})
    down = make_hub(store_url, settings=nowhere, relay=True, relay_poll_interval=0.1)
    ids = set()
    for _ in range(3):
        answer = down.submit(dossier(new_code()))
        assert answer.status_code == 202, answer.text
        ids.add(answer.json()["message_id"])
    ready = down.http.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["broker"] == "not connected"
    assert down.outbox_count() == 3
    assert drain(settings.amqp_url, queue) == []
    down.stop()  # and its relay

    back = make_hub(store_url, settings=settings, relay=True, relay_poll_interval=0.1)
    seen: set[str] = set()
    wait_for(lambda: published_ids(settings, queue, seen) >= ids, message="publication")
    wait_for(lambda: back.outbox_count() == 0, message="rows marked published")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_connection_lost_while_accepting(make_hub: Callable[..., Hub], settings: Settings,
                                         store_url: str, amqp_vhost: str) -> None:
    queue = declare_events(settings.amqp_url, settings.name_prefix)
    hub = make_hub(store_url, settings=settings, relay=True, relay_poll_interval=0.1)
    wait_for(lambda: hub.http.get("/readyz").status_code == 200, message="relay connected")
    ids = {hub.submit(dossier(new_code())).json()["message_id"]}
    rabbitmqctl("close_all_connections", "--vhost", amqp_vhost, "test: broker connection lost")
    for _ in range(4):
        answer = hub.submit(dossier(new_code()))
        assert answer.status_code == 202
        ids.add(answer.json()["message_id"])
    seen: set[str] = set()
    wait_for(lambda: published_ids(settings, queue, seen) >= ids, timeout=20,
             message="publication after reconnecting")
    wait_for(lambda: hub.outbox_count() == 0, message="rows marked published")


def test_two_workers_publish_each_message_once(make_hub: Callable[..., Hub],
                                               settings: Settings, store_url: str) -> None:
    """Two worker processes on one store, each with its relay: on SQLite one of them (the
    leader) reads the rows without leases, on PostgreSQL both claim rows with leases; either
    way every accepted message is published, once."""
    queue = declare_events(settings.amqp_url, settings.name_prefix)
    first = make_hub(store_url, settings=settings, relay=True, relay_poll_interval=0.1)
    second = make_hub(store_url, settings=settings, relay=True, relay_poll_interval=0.1)
    for hub in (first, second):
        wait_for(lambda h=hub: h.http.get("/readyz").status_code == 200,  # type: ignore[misc]
                 message="relay connected")
    ids = [h.submit(dossier(new_code())).json()["message_id"] for h in (first, second) * 6]
    published: list[str] = []

    def drained() -> bool:
        published.extend(Envelope.from_bytes(body).id for _, body in
                         drain(settings.amqp_url, queue))
        return set(published) >= set(ids)

    wait_for(drained, message="publication")
    wait_for(lambda: first.outbox_count() == 0, message="rows marked published")
    published.extend(Envelope.from_bytes(body).id for _, body in drain(settings.amqp_url, queue))
    assert sorted(published) == sorted(ids)
