"""The relay's hand-off on PostgreSQL (hub.outbox.relay): the intake of its process writes rows
leased to it and hands them over, so they are published without being claimed from the store;
what the relay drops from memory is still published, by the store's lease, once. Each test has
a PostgreSQL schema of its own (test_api_support.relay_store_url)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from test_api_support import (  # noqa: F401 - fixtures
    STATUS,
    Hub,
    declare_events,
    dossier,
    drain,
    hubs_fixture,
    keys_fixture,
    make_hub_fixture,
    new_code,
    relay_store_url_fixture,
)

from hub.envelope import Envelope
from hub.outbox.relay import OutboxRelay
from hub.settings import Settings
from hub.store import OutboxItem
from hub.testing.waiting import wait_for

pytestmark = pytest.mark.parametrize("relay_store_url", ["postgresql"], indirect=True)


def _claims(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Message ids the hub's relay claimed from the store (rather than was handed). A look
    without a lease claims nothing: ``hub.outbox_count`` looks so, and sees a row the relay has
    published but not yet marked."""
    claimed: list[str] = []
    real = hub.store.outbox_pending

    def spy(limit: int = 100, *, lease: float | None = 30.0) -> list[OutboxItem]:
        items = real(limit, lease=lease)
        if lease is not None:
            claimed.extend(item.message_id for item in items)
        return items

    monkeypatch.setattr(hub.store, "outbox_pending", spy)
    return claimed


def _published(settings: Settings, queue: str, into: list[str]) -> list[str]:
    into.extend(Envelope.from_bytes(body).id for _, body in drain(settings.amqp_url, queue))
    return into


def test_rows_are_handed_to_the_relay_not_claimed(hubs: Callable[..., Hub],
                                                  settings: Settings, relay_store_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    queue = declare_events(settings.amqp_url, settings.name_prefix)
    hub = hubs(relay_store_url, settings=settings, relay=True, relay_poll_interval=0.2)
    relay: OutboxRelay = hub.app.state.relay
    wait_for(lambda: hub.http.get("/readyz").status_code == 200, message="relay connected")
    assert relay.lease_for_intake() == relay.lease
    claimed = _claims(hub, monkeypatch)
    ids = [hub.submit(dossier(new_code())).json()["message_id"] for _ in range(8)]
    published: list[str] = []
    wait_for(lambda: set(_published(settings, queue, published)) >= set(ids),
             message="publication")
    wait_for(lambda: hub.outbox_count() == 0, message="rows marked published")
    assert sorted(published) == sorted(ids)  # once each
    assert not set(claimed) & set(ids)  # none of them had to be claimed back


def test_what_the_relay_drops_is_published_when_the_lease_ends(
        hubs: Callable[..., Hub], settings: Settings, relay_store_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows in memory are a shortcut only: a full queue (here: no room at all) leaves them
    leased in the store, and the relay claims them once the lease has run out."""
    queue = declare_events(settings.amqp_url, settings.name_prefix)
    hub = hubs(relay_store_url, settings=settings, relay=True, relay_poll_interval=0.1)
    relay: OutboxRelay = hub.app.state.relay
    relay.lease = 1.0
    relay.max_handed = 0
    wait_for(lambda: hub.http.get("/readyz").status_code == 200, message="relay connected")
    claimed = _claims(hub, monkeypatch)
    ids = [hub.submit(dossier(new_code())).json()["message_id"] for _ in range(4)]
    published: list[str] = []
    wait_for(lambda: set(_published(settings, queue, published)) >= set(ids), timeout=15,
             message="publication after the lease")
    wait_for(lambda: hub.outbox_count() == 0, message="rows marked published")
    assert sorted(published) == sorted(ids)
    assert set(claimed) >= set(ids)  # claimed from the store, the lease over


def test_no_lease_while_the_broker_is_unreachable(hubs: Callable[..., Hub],
                                                  settings: Settings, relay_store_url: str) -> None:
    """A relay that cannot publish must not keep rows from the relays of other processes."""
    down = settings.model_copy(update={"amqp_url": "amqp://guest:guest@127.0.0.1:1/%2F"})
    hub = hubs(relay_store_url, settings=down, relay=True, relay_poll_interval=0.1)
    relay: OutboxRelay = hub.app.state.relay
    assert relay.lease_for_intake() is None
    code = new_code()
    assert hub.submit(dossier(code)).status_code == 202
    # Unleased: a relay of another process claims it at once.
    [item] = [i for i in hub.store.outbox_pending(1000, lease=30.0)
              if Envelope.from_bytes(i.body).subject == code]
    assert item.message_id


def test_a_dossiers_rows_kept_by_two_processes_are_published_in_order(
        hubs: Callable[..., Hub], settings: Settings, relay_store_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two serve processes (two apps on one database): the submission is kept by the first,
    whose relay is slow to publish; the status change by the second. The second relay holds
    the change back until the submission is out, as an ordered destination needs."""
    queue = declare_events(settings.amqp_url, settings.name_prefix)
    first = hubs(relay_store_url, settings=settings, relay=True, relay_poll_interval=0.2)
    second = hubs(relay_store_url, settings=settings, relay=True, relay_poll_interval=0.2)
    for hub in (first, second):
        wait_for(lambda hub=hub: hub.http.get("/readyz").status_code == 200,
                 message="relay connected")
    slow: OutboxRelay = first.app.state.relay
    assert slow.publisher is not None
    room, stuck, gate = slow.publisher.wait_for_room, threading.Event(), threading.Event()

    async def gated() -> None:
        stuck.set()
        await asyncio.to_thread(gate.wait, 30)
        await room()

    monkeypatch.setattr(slow.publisher, "wait_for_room", gated)
    held: list[int] = []
    relay: OutboxRelay = second.app.state.relay
    monkeypatch.setattr(relay, "on_held_back", held.append)
    code = new_code()
    assert first.submit(dossier(code)).status_code == 202
    wait_for(stuck.is_set, message="the first relay about to publish the submission")
    change = second.post(f"/v1/dossiers/{code}/status",
                         {"status": 2, "at": "2025-01-01T09:00:00"}, STATUS)
    assert change.status_code == 202, change.text
    wait_for(lambda: len(held) >= 2, message="the change held back, more than once")
    assert drain(settings.amqp_url, queue) == []  # nothing of the dossier is out yet
    gate.set()
    published: list[Envelope] = []

    def out() -> list[Envelope]:
        published.extend(Envelope.from_bytes(body) for _, body in drain(settings.amqp_url, queue))
        return published

    wait_for(lambda: len(out()) >= 2, message="both published")
    assert [(e.type, e.sequence) for e in published] == [
        ("vn.gov.dossier.submitted", 1), (STATUS, 2)]
    wait_for(lambda: first.outbox_count() == 0, message="rows marked published")
