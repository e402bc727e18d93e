"""The relay's hand-off on PostgreSQL (hub.outbox.relay): the intake of its process writes rows
leased to it and hands them over, so they are published without being claimed from the store;
what the relay drops from memory is still published, by the store's lease, once. Each test has
a PostgreSQL schema of its own (test_api_support.relay_store_url)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from test_api_support import (  # noqa: F401 - fixtures
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
    """Message ids the hub's relay claimed from the store (rather than was handed)."""
    claimed: list[str] = []
    real = hub.store.outbox_pending

    def spy(*args: Any, **kwargs: Any) -> list[OutboxItem]:
        items = real(*args, **kwargs)
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
