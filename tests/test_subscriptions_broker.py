"""Ministries' subscriptions through real RabbitMQ (the test's own vhost, its management API)
and a real store: queues declared from the store, users that may read their own queue and
nothing else, projected copies signed by the hub, history replayed, alerts."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pika
import pytest
from joserfc import jws
from joserfc.jwk import ECKey
from pika.exceptions import ChannelClosedByBroker, ProbableAuthenticationError
from subscriptions_support import (
    BHXH,
    H56,
    H57,
    HOTICH,
    Hub,
    dossier,
    drop_users,
    fanout_running,
    make_hub,
    publish,
)
from typer.testing import CliRunner

from hub.broker.management import Management
from hub.cli import app as cli
from hub.errors import AccessDenied, ClientError
from hub.settings import Settings
from hub.signing.keys import kid_of
from hub.store import Store
from hub.subscriptions import fanout, records, service
from hub.subscriptions.fanout import Fanout, hub_signer
from hub.subscriptions.replay import replay
from hub.subscriptions.status import StatusCollector, statuses
from hub.subscriptions.topology import apply_from_store
from hub.testing.broker import depth, read_all
from hub.testing.waiting import wait_for


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    made = make_hub(settings)
    try:
        yield made
    finally:
        drop_users(settings)


@pytest.fixture
def store(hub: Hub) -> Iterator[Store]:
    with Store.open(hub.settings.store_url) as opened:
        yield opened


def test_a_subscription_gets_a_queue_bound_through_the_feed_and_apply_is_idempotent(
        hub: Hub, store: Store) -> None:
    s = hub.settings
    sub, _ = service.add(s, store, "bhxh", BHXH, ["vn.gov.dossier.submitted",
                                                  "vn.gov.dossier.status-changed"], [H56], [])
    assert sub.projection == "identity-only"  # the ministry's first
    sn = service.names_of(s)
    with Management.from_settings(s) as mgmt:
        feed = {b["routing_key"] for b in mgmt.queue_bindings(sn.feed)
                if b["source"] == hub.names.events}
        assert feed == {"dossier.submitted.000_00_00_H56.*",
                        "dossier.status-changed.000_00_00_H56.*"}
        # The ministry's queue is bound to nothing: only the fan-out fills it.
        assert [b for b in mgmt.queue_bindings(sn.queue("bhxh")) if b["source"]] == []
        history = mgmt._call("GET", f"/api/queues/{mgmt._v()}/{sn.history}")
        assert history["arguments"]["x-queue-type"] == "stream"
        assert history["arguments"]["x-max-age"] == s.history_max_age
    again = apply_from_store(s)
    assert {a.outcome for a in again if a.kind == "queue"} == {"exists"}
    # Removing it unbinds the feed and deletes its queues.
    service.remove(s, store, "bhxh")
    with Management.from_settings(s) as mgmt:
        assert not [b for b in mgmt.queue_bindings(sn.feed) if b["source"] == hub.names.events]
        assert not mgmt.queue(sn.queue("bhxh")).exists


def test_access_is_the_hubs_decision_default_deny(hub: Hub, store: Store) -> None:
    s = hub.settings
    with pytest.raises(AccessDenied) as refused:  # hotich: dossiers of H56 only
        service.add(s, store, "ht", HOTICH, ["vn.gov.dossier.submitted"], [H57], [])
    assert refused.value.code == "client.agency_not_allowed"
    with pytest.raises(AccessDenied) as refused:
        service.add(s, store, "ht", HOTICH, ["vn.gov.payment.completed"], [H56], [])
    assert refused.value.code == "client.type_not_allowed"
    with pytest.raises(AccessDenied) as refused:  # every agency: not in its list
        service.add(s, store, "ht", HOTICH, ["vn.gov.dossier.submitted"], [], [])
    assert refused.value.code == "client.agency_not_allowed"
    with pytest.raises(AccessDenied) as refused:
        service.add(s, store, "ht", HOTICH, ["vn.gov.dossier.submitted"], [H56], [],
                    "identity-only")
    assert refused.value.code == "client.projection_not_allowed"
    with pytest.raises(AccessDenied) as refused:
        service.add(s, store, "x", "VN:GOV:000.00.00.G99:unknown", ["vn.gov.dossier.submitted"],
                    [H56], [])
    assert refused.value.code == "client.ministry_unknown"
    assert records.all_(store) == []


def _connect(url: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(url))


def test_a_ministry_reads_its_own_queue_and_nothing_else(hub: Hub, store: Store) -> None:
    s = hub.settings
    sn = service.names_of(s)
    service.add(s, store, "bhxh", BHXH, ["vn.gov.dossier.submitted"], [], [])
    service.add(s, store, "hotich", HOTICH, ["vn.gov.dossier.submitted"], [H56], [])
    bhxh = service.credentials(s, store, BHXH)
    service.credentials(s, store, HOTICH)
    with pytest.raises(ClientError) as again:  # shown once: a second call must rotate
        service.credentials(s, store, BHXH)
    assert again.value.code == "client.credentials_exist"
    publish(hub, [dossier(1)])
    with fanout_running(hub, store):
        wait_for(lambda: depth(s.amqp_url, sn.queue("hotich")) == 1, message="hotich's copy")
    conn = _connect(bhxh.amqp_url)
    try:
        ch = conn.channel()
        assert ch.queue_declare(sn.queue("bhxh"), passive=True).method.message_count == 1
        # Its own queue: readable.
        method, _, body = ch.basic_get(sn.queue("bhxh"), auto_ack=True)
        assert method is not None and json.loads(body)["type"] == "vn.gov.dossier.submitted"
        # Another ministry's queue: refused.
        with pytest.raises(ChannelClosedByBroker) as refused:
            ch.basic_get(sn.queue("hotich"), auto_ack=True)
        assert refused.value.reply_code == 403
        # Publishing, anywhere: refused.
        ch = conn.channel()
        ch.confirm_delivery()
        with pytest.raises(ChannelClosedByBroker) as refused:
            ch.basic_publish(hub.names.events, "dossier.submitted.x.y", b"{}")
        assert refused.value.reply_code == 403
        ch = conn.channel()
        ch.confirm_delivery()
        with pytest.raises(ChannelClosedByBroker) as refused:
            ch.basic_publish("", sn.queue("bhxh"), b"{}")
        assert refused.value.reply_code == 403
        # Declaring a queue of its own, or binding its queue: refused.
        ch = conn.channel()
        with pytest.raises(ChannelClosedByBroker) as refused:
            ch.queue_declare("mine", durable=True)
        assert refused.value.reply_code == 403
        ch = conn.channel()
        with pytest.raises(ChannelClosedByBroker) as refused:
            ch.queue_bind(sn.queue("bhxh"), hub.names.events, "#")
        assert refused.value.reply_code == 403
    finally:
        if conn.is_open:
            conn.close()
    assert depth(s.amqp_url, sn.queue("hotich")) == 1  # untouched by bhxh
    # Rotation: the old password no longer opens a connection, the new one does.
    rotated = service.credentials(s, store, BHXH, rotate=True)
    assert rotated.password != bhxh.password
    with pytest.raises(ProbableAuthenticationError):
        _connect(bhxh.amqp_url)
    _connect(rotated.amqp_url).close()


# A stock joserfc verifier: ES256 only, the hub's own protected members (lt-id...) let through.
_REGISTRY = jws.JWSRegistry(algorithms=["ES256"], strict_check_header=False)


def _hub_key(hub: Hub) -> ECKey:
    assert hub.hub_material.certificate is not None
    return ECKey.import_key(hub.hub_material.certificate.public_key())  # type: ignore[arg-type]


def test_a_ministry_receives_projected_copies_signed_by_the_hub(hub: Hub, store: Store) -> None:
    s = hub.settings
    sn = service.names_of(s)
    service.add(s, store, "bhxh", BHXH, ["vn.gov.dossier.submitted"], [H56], [])
    service.add(s, store, "hotich", HOTICH, ["vn.gov.dossier.submitted",
                                             "vn.gov.dossier.status-changed"], [H56], [])
    sent = [dossier(1), dossier(2, H57), dossier(3, type="vn.gov.dossier.status-changed")]
    publish(hub, sent)
    with fanout_running(hub, store):
        wait_for(lambda: depth(s.amqp_url, sn.queue("hotich")) == 2
                 and depth(s.amqp_url, sn.queue("bhxh")) == 1, message="the copies")
    bhxh = read_all(s.amqp_url, sn.queue("bhxh"))
    hotich = read_all(s.amqp_url, sn.queue("hotich"))
    # Exactly what each asked for: H57's dossier reached nobody, the status change hotich only.
    assert [m.message_id for m in bhxh] == [sent[0].id]
    assert sorted(m.message_id for m in hotich) == sorted([sent[0].id, sent[2].id])
    kid = kid_of(hub.hub_material.certificate)  # type: ignore[arg-type]
    key = _hub_key(hub)
    # Nothing in a copy names another queue: a message for several queues has no routing key
    # and its BCC list is removed by the broker; one sent alone (its queue not yet seen by the
    # fan-out's status poll) has its own queue's name.
    for queue, got in ((sn.queue("bhxh"), bhxh), (sn.queue("hotich"), hotich)):
        for m in got:
            assert m.exchange == "" and m.routing_key in ("", queue)
            assert set(m.headers) <= {"lt-signature", "x-delivery-count"}, m.headers
    for m in [*bhxh, *hotich]:
        token = m.headers["lt-signature"]
        header_b64 = token.split(".")[0]
        header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
        assert header["kid"] == kid and header["b64"] is False and header["lt-id"] == m.message_id
        obj = jws.deserialize_compact(token, key, payload=m.body, registry=_REGISTRY)
        assert obj.payload == m.body
    applicant = json.loads(bhxh[0].body)["data"]["applicant"]
    assert applicant == {"identity_number": "001090012345"}  # identity-only
    minimal = json.loads(next(m.body for m in hotich if m.message_id == sent[0].id))
    assert "applicant" in minimal["data"] and minimal["data"]["applicant"] == {}
    status = json.loads(next(m.body for m in hotich if m.message_id == sent[2].id))
    assert "officer" not in status["data"] and status["data"]["status"] == 2
    assert status["source"] == sent[2].source and status["subject"] == sent[2].subject
    assert not any("Nguyễn" in m.body.decode() or "0912345678" in m.body.decode()
                   for m in [*bhxh, *hotich])


def test_history_is_replayed_into_a_queue_with_the_original_ids(hub: Hub, store: Store) -> None:
    s = hub.settings
    sn = service.names_of(s)
    sent = [dossier(i) for i in range(1, 6)]
    publish(hub, sent)  # before the subscription exists: only the history has them
    sub, _ = service.add(s, store, "bhxh", BHXH, ["vn.gov.dossier.submitted"], [H56], [])
    assert depth(s.amqp_url, sn.queue("bhxh")) == 0
    signer = hub_signer(s)
    report = replay(s, [sub], signer, offset=0)
    assert report.read == 5 and report.copied == {"bhxh": 5} and not report.refused
    got = read_all(s.amqp_url, sn.queue("bhxh"))
    assert [m.message_id for m in got] == [e.id for e in sent]
    assert all(json.loads(m.body)["data"]["applicant"] == {"identity_number": "001090012345"}
               for m in got)
    key = _hub_key(hub)
    for m in got:
        jws.deserialize_compact(m.headers["lt-signature"], key, payload=m.body,
                               registry=_REGISTRY)
    # From a date: what was before is left out; the end is where the replay began.
    later = replay(s, [sub], signer, since=datetime.now(UTC) + timedelta(minutes=5))
    assert later.copied == {"bhxh": 0} and not later.refused
    assert depth(s.amqp_url, sn.queue("bhxh")) == 0
    # Through the command line, by ministry: the same five again.
    result = CliRunner().invoke(cli, ["subscriptions", "replay", BHXH, "--offset", "0"],
                                env=_env(s))
    assert result.exit_code == 0, result.output
    assert "bhxh 5" in result.output
    # The command counted its copies in the queue ledger (the age of the oldest message).
    assert store.queue_ledger.checkpoints(sn.queue("bhxh"), 5)[0] == 5
    assert [m.message_id for m in read_all(s.amqp_url, sn.queue("bhxh"))] == [e.id for e in sent]


def _env(s: Settings) -> dict[str, str]:
    return {"LIENTHONG_DATA_DIR": str(s.data_dir), "LIENTHONG_AMQP_URL": s.amqp_url,
            "LIENTHONG_NAME_PREFIX": s.name_prefix,
            "LIENTHONG_SUBSCRIPTION_ALERT_DEPTH": str(s.subscription_alert_depth),
            "LIENTHONG_SUBSCRIPTION_ALERT_IDLE_MINUTES":
                str(s.subscription_alert_idle_minutes)}


def test_operators_see_a_backlog_and_a_consumer_gone(settings: Settings) -> None:
    # "Gone for N minutes" is judged at a later `now` (statuses) or with a threshold already
    # passed (the command line, the metrics), never by waiting for the clock.
    hub = make_hub(settings, subscription_alert_depth=2, subscription_alert_idle_minutes=10)
    s = hub.settings
    passed = s.model_copy(update={"subscription_alert_idle_minutes": 0.0001})
    sn = service.names_of(s)
    try:
        with Store.open(s.store_url) as store:
            runner = CliRunner()
            added = runner.invoke(cli, ["subscriptions", "add", "bhxh", "--ministry", BHXH,
                                        "--type", "vn.gov.dossier.submitted"], env=_env(s))
            assert added.exit_code == 0, added.output
            assert "password (shown once, not kept)" in added.output
            listed = runner.invoke(cli, ["subscriptions", "list", "--json"], env=_env(s))
            assert listed.exit_code == 0, listed.output  # nothing to report yet
            publish(hub, [dossier(i) for i in range(1, 4)])
            with fanout_running(hub, store):
                wait_for(lambda: depth(s.amqp_url, sn.queue("bhxh")) == 3)
            # A consumer attaches: it is seen, so "gone" counts from now.
            conn = pika.BlockingConnection(pika.URLParameters(s.amqp_url))
            ch = conn.channel()
            ch.basic_qos(prefetch_count=1)
            ch.basic_consume(sn.queue("bhxh"), lambda *a: None)
            [st] = statuses(s, store)
            seen = datetime.now(UTC)
            # Ready messages count (the one the consumer holds does not); the oldest is known
            # with a consumer attached too (test_the_oldest_message_is_dated_...).
            assert (st.consumers, st.depth) == (1, 2) and st.oldest_age is not None
            assert st.reasons == ["backlog"]
            conn.close()
            wait_for(lambda: statuses(s, store)[0].consumers == 0, message="the consumer gone")
            [st] = statuses(s, store)
            assert st.reasons == ["backlog"]  # gone, but not for 10 minutes yet
            [st] = statuses(s, store, now=seen + timedelta(minutes=11))
            assert st.reasons == ["backlog", "no_consumer"]
            assert st.depth == 3 and st.oldest_age is not None
            listed = runner.invoke(cli, ["subscriptions", "list"], env=_env(passed))
            assert listed.exit_code == 3, listed.output
            assert "ALERT: 3 messages waiting (alert at 2)" in listed.output
            assert "ALERT: no consumer for" in listed.output
            samples = {(m.name, tuple(sorted(x.labels.items()))): x.value
                       for m in StatusCollector(passed, store).collect() for x in m.samples}
            key = (("ministry", BHXH), ("reason", "no_consumer"), ("subscription", "bhxh"))
            assert samples[("lienthong_subscription_alert", key)] == 1.0
            assert samples[("lienthong_subscription_messages",
                            (("ministry", BHXH), ("subscription", "bhxh")))] == 3.0
            # Looking at the queue left its messages in place.
            assert depth(s.amqp_url, sn.queue("bhxh")) == 3
    finally:
        drop_users(s)


def test_the_oldest_message_is_dated_with_a_consumer_holding_messages_and_without(
        hub: Hub, store: Store) -> None:
    """Quorum queues report no head timestamp: the age comes from the queue ledger the fan-out
    keeps, with the queue's unacknowledged messages counted as still in it."""
    s = hub.settings
    sn = service.names_of(s)
    service.add(s, store, "bhxh", BHXH, ["vn.gov.dossier.submitted"], [H56], [])
    service.add(s, store, "hotich", HOTICH, ["vn.gov.dossier.submitted"], [H56], [])
    queues = [sn.queue("bhxh"), sn.queue("hotich")]

    def batch(numbers: range) -> tuple[datetime, datetime]:
        """Publish and fan out ``numbers``; the times around their checkpoint."""
        before = datetime.now(UTC)
        publish(hub, [dossier(i) for i in numbers])
        with fanout_running(hub, store):
            wait_for(lambda: all(store.queue_ledger.checkpoints(q, 0)[0] == numbers.stop - 1
                                 for q in queues), message="the copies counted")
        return before, datetime.now(UTC)

    a = batch(range(1, 3))  # 2 messages
    b = batch(range(3, 6))  # 3 more
    conn = pika.BlockingConnection(pika.URLParameters(s.amqp_url))
    try:
        # bhxh's consumer holds the first two, unacknowledged: 3 ready, but the oldest in the
        # queue is still the first batch's.
        ch = conn.channel()
        ch.basic_qos(prefetch_count=2)
        ch.basic_consume(sn.queue("bhxh"), lambda *a: None)

        def by_name() -> dict[str, object]:
            return {st.subscription.name: st for st in statuses(s, store, now=now)}

        now = datetime.now(UTC)
        wait_for(lambda: by_name()["bhxh"].unacked == 2,  # type: ignore[attr-defined]
                 timeout=30, message="the management API counting bhxh's unacked messages")
        found = by_name()
        held, idle = found["bhxh"], found["hotich"]
        assert (held.depth, held.unacked, held.consumers) == (3, 2, 1)  # type: ignore[attr-defined]
        assert (idle.depth, idle.consumers) == (5, 0)  # type: ignore[attr-defined]
        for st in (held, idle):  # both: the first batch's age
            assert (now - a[1]).total_seconds() <= st.oldest_age  # type: ignore[attr-defined]
            assert st.oldest_age <= (now - a[0]).total_seconds()  # type: ignore[attr-defined]
            assert not st.oldest_at_least  # type: ignore[attr-defined]
        # hotich takes and acks the first batch: its oldest is the second batch's.
        taker = conn.channel()
        for _ in range(2):
            method, _, _ = taker.basic_get(sn.queue("hotich"), auto_ack=True)
            assert method is not None
        now = datetime.now(UTC)
        idle = by_name()["hotich"]
        assert idle.depth == 3  # type: ignore[attr-defined]
        assert (now - b[1]).total_seconds() <= idle.oldest_age  # type: ignore[attr-defined]
        assert idle.oldest_age <= (now - b[0]).total_seconds()  # type: ignore[attr-defined]
        # Nothing was taken from the queues to learn their age.
        assert by_name()["bhxh"].unacked == 2  # type: ignore[attr-defined]
    finally:
        conn.close()
    # Through the command line: the age in the JSON of `list`.
    listed = CliRunner().invoke(cli, ["subscriptions", "list", "--json"], env=_env(s))
    rows = {r["name"]: r for r in json.loads(listed.output)}
    assert rows["hotich"]["oldest_age_seconds"] is not None
    assert rows["hotich"]["oldest_age_at_least"] is False


def test_the_fan_out_reloads_off_the_event_loop(hub: Hub, store: Store,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload during deliveries reads the store and asks the broker, over a blocking
    connection, about a subscription's queue not seen before: it runs in a thread, and the
    process's other work goes on meanwhile (here, the task that lets the broker's check
    finish: on the loop, it could never run, and the check would give up waiting)."""
    s = hub.settings
    handler = Fanout(s, store, hub_signer(s))
    assert handler.subscriptions == []
    service.add(s, store, "bhxh", BHXH, ["vn.gov.dossier.submitted"], [H56], [])
    released = threading.Event()
    waited: list[bool] = []
    real = fanout.queues_present

    def slow_broker(settings: Settings, queues: Sequence[str]) -> set[str]:
        waited.append(released.wait(30))  # True once the loop's other task released it
        return real(settings, queues)

    monkeypatch.setattr(fanout, "queues_present", slow_broker)
    handler._loaded -= fanout.RELOAD + 1  # its last reload as old as the reload interval

    async def deliver() -> list[str]:
        matching = asyncio.create_task(handler.matching(dossier(1)))

        async def meanwhile() -> None:
            released.set()

        await asyncio.gather(matching, meanwhile())
        return [sub.name for sub in matching.result()]

    assert asyncio.run(deliver()) == ["bhxh"]
    assert waited == [True]
    assert service.names_of(s).queue("bhxh") in handler.present
