"""The outbox relay against the real broker: accepted messages are published with confirms and
marked published; with the broker unreachable intake still answers 202 and the relay publishes
when the broker is back, and the same relay survives its connection being cut."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pika
import pytest
from conftest import rabbitmqctl
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
from hub.intake.drafts import UPSTREAM_PROOF
from hub.settings import Settings
from hub.testing.waiting import wait_for


def published_ids(settings: Settings, queue: str, into: set[str]) -> set[str]:
    for props, body in drain(settings.amqp_url, queue):
        env = Envelope.from_bytes(body)
        assert props.message_id == env.id and props.type == env.type
        assert props.headers["lt-signature"] and props.headers[UPSTREAM_PROOF]
        into.add(env.id)
    return into


def test_accepted_messages_are_published(hubs: Callable[..., Hub], settings: Settings,
                                         relay_store_url: str) -> None:
    queue = declare_events(settings.amqp_url, settings.name_prefix)
    hub = hubs(relay_store_url, settings=settings, relay=True, relay_poll_interval=0.2)
    wait_for(lambda: hub.http.get("/readyz").status_code == 200, message="relay connected")
    ids = {hub.submit(dossier(new_code())).json()["message_id"] for _ in range(5)}
    seen: set[str] = set()
    wait_for(lambda: published_ids(settings, queue, seen) >= ids, message="publication")
    wait_for(lambda: hub.outbox_count() == 0, message="rows marked published")
    assert "lienthong_outbox_published_total 5.0" in hub.http.get("/metrics").text


def test_broker_down_then_back(hubs: Callable[..., Hub], settings: Settings,
                               relay_store_url: str) -> None:
    queue = declare_events(settings.amqp_url, settings.name_prefix)
    nowhere = settings.model_copy(update={
        "amqp_url": f"amqp://guest:guest@127.0.0.1:5672/{quote('lt-no-such-vhost', safe='')}"})
    down = hubs(relay_store_url, settings=nowhere, relay=True, relay_poll_interval=0.1)
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

    back = hubs(relay_store_url, settings=settings, relay=True, relay_poll_interval=0.1)
    seen: set[str] = set()
    wait_for(lambda: published_ids(settings, queue, seen) >= ids, message="publication")
    wait_for(lambda: back.outbox_count() == 0, message="rows marked published")


@pytest.mark.parametrize("relay_store_url", ["sqlite"], indirect=True)
def test_connection_lost_while_accepting(hubs: Callable[..., Hub], settings: Settings,
                                         relay_store_url: str, amqp_vhost: str) -> None:
    queue = declare_events(settings.amqp_url, settings.name_prefix)
    hub = hubs(relay_store_url, settings=settings, relay=True, relay_poll_interval=0.1)
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


def test_two_workers_publish_each_message_once(hubs: Callable[..., Hub],
                                               settings: Settings, relay_store_url: str) -> None:
    """Two worker processes on one store, each with its relay: on SQLite one of them (the
    leader) reads the rows without leases, on PostgreSQL both claim rows with leases; either
    way every accepted message is published, once."""
    queue = declare_events(settings.amqp_url, settings.name_prefix)
    first = hubs(relay_store_url, settings=settings, relay=True, relay_poll_interval=0.1)
    second = hubs(relay_store_url, settings=settings, relay=True, relay_poll_interval=0.1)
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


# -- the same relay, the broker unreachable then back, then its connection cut ---------------

class BrokerGate:
    """A TCP proxy of the test's own in front of the real RabbitMQ. Closed, it resets every
    connection it accepts (a dead broker port, as a client sees it); open, it forwards bytes
    both ways. It can also hold back what the broker sends (its confirms) and cut every
    established connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._replies = threading.Event()
        self._replies.set()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self.refused = 0  # connections reset while closed
        self.forwarded = 0  # connections forwarded while open
        self._thread = threading.Thread(target=self._accept, name="broker gate", daemon=True)
        self._thread.start()

    def url(self, vhost: str) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{quote(vhost, safe='')}"

    def open(self) -> None:
        self._open.set()

    def hold_replies(self) -> None:
        """Stop passing on what the broker sends: publishes arrive, confirms do not."""
        self._replies.clear()

    def cut(self) -> None:
        """Close every established connection (what the broker held back is dropped); new
        connections pass both ways."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            _shut(*pair)
        self._replies.set()

    def close(self) -> None:
        self._open.clear()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
        self._listener.close()
        self.cut()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if not self._open.is_set():
                # Linger 0: the close is a reset, as from a port nobody listens on.
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                with self._lock:
                    self.refused += 1
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
                self.forwarded += 1
            for src, dst, gate in ((client, upstream, None), (upstream, client, self._replies)):
                threading.Thread(target=self._pump, args=(src, dst, gate), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, gate: threading.Event | None) -> None:
        try:
            while data := src.recv(65536):
                if gate is not None:
                    gate.wait()  # held: a cut releases it onto a closed socket, and drops it
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _shut(src, dst)


def _shut(*sockets: socket.socket) -> None:
    for s in sockets:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()


@pytest.fixture
def gate(settings: Settings) -> Iterator[BrokerGate]:
    broker = pika.URLParameters(settings.amqp_url)
    proxy = BrokerGate((broker.host, broker.port))
    try:
        yield proxy
    finally:
        proxy.close()


def queue_depth(amqp_url: str, queue: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        depth: int = conn.channel().queue_declare(queue, passive=True).method.message_count
        return depth
    finally:
        conn.close()


def test_the_same_relay_recovers_from_an_unreachable_broker_and_a_cut(
        gate: BrokerGate, hubs: Callable[..., Hub], settings: Settings, relay_store_url: str,
        amqp_vhost: str) -> None:
    queue = declare_events(settings.amqp_url, settings.name_prefix)
    hub = hubs(relay_store_url, settings=settings.model_copy(update={"amqp_url": gate.url(
        amqp_vhost)}), relay=True, relay_poll_interval=0.1)
    relay = hub.app.state.relay

    # The broker is unreachable: the relay keeps trying, /readyz says so, intake goes on.
    wait_for(lambda: gate.refused >= 2, message="the relay trying the dead port")
    ready = hub.http.get("/readyz")
    assert ready.status_code == 503, ready.text
    assert ready.json()["status"] == "not ready"
    assert {k: ready.json()["checks"][k] for k in ("store", "broker")} == {
        "store": "ok", "broker": "not connected"}
    accepted = []
    for _ in range(5):
        answer = hub.submit(dossier(new_code()))
        assert answer.status_code == 202, answer.text
        accepted.append(answer.json()["message_id"])
    assert hub.outbox_count() == 5 and queue_depth(settings.amqp_url, queue) == 0

    # The broker is back: the same relay connects and publishes each message once.
    gate.open()
    wait_for(lambda: hub.http.get("/readyz").status_code == 200, message="relay connected")
    wait_for(lambda: hub.outbox_count() == 0, message="rows marked published")
    published = [Envelope.from_bytes(body).id for _, body in drain(settings.amqp_url, queue)]
    assert sorted(published) == sorted(accepted)
    assert hub.app.state.relay is relay and relay.published == 5
    publisher = relay.publisher  # the one it connected with

    # Cut while messages are in flight: the relay publishes a batch and waits for its
    # confirms, which the gate holds back; what was accepted after it waits in the outbox.
    gate.hold_replies()
    in_flight = [hub.submit(dossier(new_code())).json()["message_id"] for _ in range(5)]
    wait_for(lambda: queue_depth(settings.amqp_url, queue) >= 1, message="publishes arriving")
    assert hub.outbox_count() == 5  # none confirmed, so none marked published
    connections = gate.forwarded
    gate.cut()
    wait_for(lambda: gate.forwarded > connections, message="the relay reconnecting")
    wait_for(lambda: hub.outbox_count() == 0, message="rows marked published after the cut")
    assert hub.http.get("/readyz").status_code == 200
    copies: defaultdict[str, set[bytes]] = defaultdict(set)
    for _, body in drain(settings.amqp_url, queue):
        copies[Envelope.from_bytes(body).id].add(body)
    # Nothing lost, nothing else; an unconfirmed message is sent again, so it may be there
    # twice, as the same bytes (which the idempotent receivers absorb).
    assert set(copies) == set(in_flight)
    assert all(len(bodies) == 1 for bodies in copies.values())
    # The same relay and publisher, reconnected; what was in flight at the cut was sent again.
    assert relay.publisher is publisher and relay.published == 10
    assert publisher.stats.reconnects >= 1 and publisher.stats.resent >= 1
