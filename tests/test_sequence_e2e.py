"""One sequence per dossier, whatever the door (issue 10, point 8).

Every event the hub accepts for a dossier takes the next number of the dossier's one sequence:
REST and SOAP requests, systems' callbacks (a province's updates), and the events adapters make.
A system's own counter travels apart (``systemsequence``). Before, the provincial callback
numbered with the province's counter or the time in milliseconds, and the portal's worker,
which skips what is not newer than the last applied, then dropped every later REST status
change of the dossier, with an info line only.

- through the real app (both databases): callbacks and REST requests share the numbering, and
  the status a callback reports is the one the next REST change must follow;
- adapters' events (a real worker on the real broker, and an adapter's command publishing):
  numbered after the intake's, the same message always with the same number;
- end to end: `lienthong serve` on a socket, `lienthong worker npsp` over RabbitMQ and the
  portal simulator, provincial callbacks and REST status changes interleaved: every one reaches
  the portal, in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pika
import pytest
from test_api_support import (  # noqa: F401 - fixtures
    API_KEY,
    CLIENT_ID,
    STATUS,
    SUBMITTED,
    Hub,
    Keys,
    clients_config,
    declare_events,
    dossier,
    drain,
    keys_fixture,
    make_hub_fixture,
    new_code,
    relay_store_url_fixture,
    sign,
)

from adapters.npsp.simulator import NpspSimulator
from adapters.provincial import adapter as provincial
from adapters.provincial.simulator import status_update
from hub import runtime
from hub.adapters import AdapterContext, AdapterSpec, Event, Handler
from hub.api.auth import ClientRegistry
from hub.broker import declare
from hub.broker.messages import Delivery, Outgoing
from hub.broker.publisher import Publisher
from hub.broker.topology import Topology
from hub.cli.clients import client_block
from hub.envelope import SEQUENCE_DIGITS, Envelope
from hub.intake.tables import lock_states
from hub.recorder import logged
from hub.settings import Settings
from hub.signing.truststore import TrustStore
from hub.simulation import free_port
from hub.store import Store
from hub.store.timeline import SKIPPED
from hub.testing.waiting import eventually, wait_for

CALLBACK = "/v1/callbacks/provincial"


def wire(sequence: int) -> str:
    return f"{sequence:0{SEQUENCE_DIGITS}d}"


def declare_spy(amqp_url: str, exchange: str) -> str:
    """A queue bound to every event: what the hub published, as a subscriber reads it."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        ch = conn.channel()
        queue = f"{exchange}.spy.{uuid.uuid4().hex[:6]}"
        ch.queue_declare(queue, durable=True)
        ch.queue_bind(queue, exchange, "#")
        return queue
    finally:
        conn.close()


# -- the real app, both databases -----------------------------------------------------------


@pytest.fixture
def hub(make_hub: Callable[..., Hub], store_url: str) -> Hub:
    config = clients_config()
    config["clients"][0]["callbacks"] = ["provincial"]
    return make_hub(store_url, adapters={"provincial": provincial},
                    registry=ClientRegistry.from_dict(config))


def kept(hub: Hub, code: str) -> list[Envelope]:
    """The hub's outbox for ``code``, in the order kept (the relay is off)."""
    envs = [Envelope.from_bytes(i.body) for i in hub.store.outbox_pending(100_000, lease=None)]
    return [e for e in envs if e.subject == code]


def status_change(hub: Hub, code: str, status: int) -> httpx.Response:
    answer: httpx.Response = hub.post(f"/v1/dossiers/{code}/status",
                                      {"status": status, "at": "2025-01-02T09:00:00"}, STATUS)
    return answer


def test_callbacks_and_rest_requests_number_one_sequence(hub: Hub) -> None:
    code = new_code()

    def push(*updates: dict[str, Any]) -> httpx.Response:
        answer: httpx.Response = hub.http.post(CALLBACK, json={"danhSach": list(updates)},
                                               headers=hub.headers)
        assert answer.status_code == 202, answer.text
        return answer

    assert hub.submit(dossier(code)).status_code == 202
    # The province's own counter, far above the hub's numbers, and an update without one
    # (numbered by its time in milliseconds before): neither may outrank later REST events.
    received = status_update(code, "DA_TIEP_NHAN", sequence=9001)
    push(received)
    assert status_change(hub, code, 4).status_code == 202
    push(status_update(code, "YEU_CAU_BO_SUNG"),
         status_update(code, "DANG_XU_LY", sequence=9002),
         status_update(code, "DA_CO_KET_QUA", sequence=9003))
    # The status the callback reported (RESOLVED) is the dossier's last one: a REST change
    # must follow it. After REST's own last (PROCESSING) this one would be allowed.
    refused = status_change(hub, code, 5)
    assert refused.status_code == 422 and refused.json()["code"] == "client.bad_transition"
    assert status_change(hub, code, 10).status_code == 202
    envs = kept(hub, code)
    assert [e.sequence for e in envs] == [1, 2, 3, 4, 5, 6, 7]
    assert [e.data["status"] for e in envs] == [1, 2, 4, 5, 4, 9, 10]
    assert [e.extensions.get("systemsequence") for e in envs] == [
        None, "9001", None, None, "9002", "9003", None]
    assert all(json.loads(e.to_bytes())["sequence"] == wire(e.sequence or 0) for e in envs)
    # The callbacks' events are the hub's (relayed) and take the dossier's procedure, as the
    # REST status changes do (routing keys carry it).
    assert envs[1].source == hub.settings.hub_id and envs[1].extensions["upstream"]
    assert {e.procedure for e in envs} == {"2.002492"}
    # The same update pushed again (the province did not see the answer) is kept once.
    assert push(received).json()["message_ids"] == [envs[1].id]
    assert len(kept(hub, code)) == 7


def test_a_callback_for_a_dossier_the_hub_never_saw_starts_its_sequence(hub: Hub) -> None:
    code = new_code()
    answer = hub.http.post(CALLBACK, json=status_update(code, "DA_TIEP_NHAN", sequence=77),
                           headers=hub.headers)
    assert answer.status_code == 202, answer.text
    assert hub.submit(dossier(code, status=2)).status_code == 202
    assert [(e.type, e.sequence) for e in kept(hub, code)] == [(STATUS, 1), (SUBMITTED, 2)]


# -- adapters' own events ---------------------------------------------------------------------


TOY_IDS = uuid.UUID("5d0c8a7e-9b3f-4e21-8c6d-2f1a0b9e7c43")


def toy_spec() -> AdapterSpec:
    """An adapter that answers each dossier it is sent with an event of its own made only of
    the delivery (id and time too), as the payment ledger keeps the event it made and returns
    it again."""

    def make_handler(ctx: AdapterContext) -> Handler:
        async def handle(event: Event) -> list[Envelope]:
            env = event.envelope
            return [env.derive(source=ctx.settings.hub_id, type="vn.gov.citizen.verified",
                               data={"dossier_code": env.subject, "matched": True},
                               id=str(uuid.uuid5(TOY_IDS, env.id)), time=env.time)]

        return handle

    return AdapterSpec(name="toy", description="answers dossiers", bindings=["dossier.#"],
                       make_handler=make_handler, ordered=True)


def test_adapters_events_take_the_dossiers_next_number(
    make_hub: Callable[..., Hub], store_url: str, settings: Settings, keys: Keys,
) -> None:
    """A real worker (hub.runtime.build_workers) on the real broker: the event its handler
    returns is numbered after the intake's, and the intake's next event after it. Each is in
    the dossier's timeline from its own transaction, with no timeline recorder running."""
    hub = make_hub(store_url, settings=settings)  # its trust store has the hub's key
    spec = toy_spec()
    empty = settings.data_dir / "topology.toml"
    empty.write_text("")
    topo = Topology.from_settings(settings, [spec], topology_file=empty)
    declare.apply(topo, settings.amqp_url)
    spy = declare_spy(settings.amqp_url, topo.names.events)
    code = new_code()
    assert hub.submit(dossier(code)).status_code == 202
    [row] = [i for i in hub.store.outbox_pending(100_000, lease=None)
             if Envelope.from_bytes(i.body).subject == code]
    signer = keys.signer(keys.hub)

    async def go() -> None:
        [worker] = runtime.build_workers(settings, ["toy"], store=hub.store, signer=signer,
                                         adapters={"toy": spec}, recorder=False)
        worker.consumer.start()
        await worker.consumer.wait_consuming()
        async with Publisher(settings.amqp_url, settings) as pub:
            # What the outbox relay would publish: the intake's row as it was kept.
            await pub.publish(Outgoing(body=row.body, exchange=row.exchange,
                                       routing_key=row.routing_key, message_id=row.message_id,
                                       type=row.type, headers=row.headers, app_id=row.app_id))
            await eventually(lambda: worker.consumer.stats.handled == 1, 10, "the handler")
        await worker.stop()

    asyncio.run(go())
    assert status_change(hub, code, 2).status_code == 202
    published = [Envelope.from_bytes(body) for _, body in drain(settings.amqp_url, spy)]
    assert [(e.type, e.sequence) for e in published] == [
        (SUBMITTED, 1), ("vn.gov.citizen.verified", 2)]
    assert [e.sequence for e in kept(hub, code)] == [1, 3]
    timeline = hub.store.timeline(code)
    assert sorted(e.message_id for e in timeline) == sorted(
        [e.id for e in published] + [kept(hub, code)[-1].id])
    [verified] = [e for e in timeline if e.event_type == "vn.gov.citizen.verified"]
    assert verified.summary == {"matched": True}


def test_the_same_event_made_again_keeps_its_number(store_url: str, keys: Keys,
                                                    tmp_path: Path) -> None:
    """A handler run again (a redelivery after its results could not be confirmed) makes the
    same message again: same number, same bytes, so its receivers take it for a duplicate
    and not for a replay of one id with another body."""
    settings = Settings(data_dir=tmp_path)
    ctx = AdapterContext(settings=settings, config={})
    code = new_code()
    with Store.open(store_url) as store:
        handle = logged(toy_spec().make_handler(ctx), store, "toy")

        def deliver(env: Envelope) -> Sequence[Envelope]:
            delivery = Delivery(body=env.to_bytes(), envelope=env, headers={}, queue="q",
                                exchange="lt.events", routing_key="r", redelivered=False,
                                attempt=0, delivery_tag=1, message_id=env.id)
            return asyncio.run(handle(delivery))

        first = Envelope.new(source=CLIENT_ID, type=SUBMITTED, subject=code, data={},
                             sequence=1)
        [a] = deliver(first)
        [b] = deliver(first)
        [c] = deliver(Envelope.new(source=CLIENT_ID, type=SUBMITTED, subject=code, data={},
                                   sequence=2))
        assert a.to_bytes() == b.to_bytes() and a.id == b.id
        assert [e.sequence for e in (a, b, c)] == [1, 1, 2]
        with store.begin() as tx:
            assert lock_states(tx.connection, [code])[code].sequence == 2


def test_adapter_commands_publish_numbered_events(settings: Settings, keys: Keys,
                                                  store_url: str) -> None:
    """What an adapter's command publishes (payment reconcile, postal poll) through
    ``hub.runtime.adapter_session`` is numbered too; published again (its confirm was lost),
    the same event goes out with the same number and bytes."""
    settings = settings.model_copy(update={"store_url": store_url})
    keys.hub.save(settings.keys_dir)
    spy = declare_events(settings.amqp_url, settings.name_prefix)
    code = new_code()

    async def go() -> None:
        async with runtime.adapter_session(settings, "postal") as (_ctx, publish):
            env = Envelope.new(source=settings.hub_id, type="vn.gov.postal.tracking-updated",
                               subject=code, data={"dossier_code": code},
                               agency="000.00.00.H56")
            await publish(env)
            await publish(env)
            await publish(replace(env, id=str(uuid.uuid4())))

    asyncio.run(go())
    bodies = [body for _, body in drain(settings.amqp_url, spy)]
    assert [Envelope.from_bytes(b).sequence for b in bodies] == [1, 1, 2]
    assert bodies[0] == bodies[1]
    # In the dossier's timeline from the transaction that numbered them, once each.
    with Store.open(store_url) as store:
        assert sorted(e.message_id for e in store.timeline(code)) == sorted(
            {Envelope.from_bytes(b).id for b in bodies})


# -- end to end: the real server, a real portal worker, the portal simulator ---------------


def lienthong(*args: str) -> list[str]:
    return [sys.executable, "-c", "from hub.cli import main; main()", *args]


@dataclass
class Running:
    base: str
    sim: NpspSimulator
    store: Store
    spy: str
    settings: Settings
    worker_log: Path


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def running(settings: Settings, keys: Keys, relay_store_url: str,
            tmp_path: Path) -> Iterator[Running]:
    keys.hub.save(settings.keys_dir)
    trust = TrustStore(settings.trust_dir)
    trust.add(keys.client.certificate_pem())  # the province, at the entry points
    trust.add(keys.hub.certificate_pem())  # the hub, on its own queues
    clients = tmp_path / "clients.toml"
    clients.write_text(client_block(CLIENT_ID, "igate", ["vn.gov.dossier.*"], ["000.00.00.H56*"],
                                    api_key=API_KEY, oauth_client_id=None, oauth_secret=None,
                                    cert_sha256=[], callbacks=["provincial"]))
    env = {
        **os.environ,
        "LIENTHONG_DATA_DIR": str(settings.data_dir),
        "LIENTHONG_AMQP_URL": settings.amqp_url,
        "LIENTHONG_NAME_PREFIX": settings.name_prefix,
        "LIENTHONG_STORE_URL": relay_store_url,
        "LIENTHONG_CLIENTS_FILE": str(clients),
        "LIENTHONG_RETRY_TIERS": "[0.5, 1, 2]",
        "LIENTHONG_WORKER_METRICS_PORT": "0",
        "NPSP_USERNAME": "hub",
        "NPSP_PASSWORD": "secret",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    applied = subprocess.run(lienthong("topology", "apply"), env=env, capture_output=True,
                             timeout=120)
    assert applied.returncode == 0, applied.stderr.decode()
    spy = declare_spy(settings.amqp_url, f"{settings.name_prefix}.events")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    worker_log = tmp_path / "worker.log"
    with NpspSimulator() as sim, Store.open(relay_store_url) as store:
        overlay = settings.data_dir / "adapters"
        overlay.mkdir(exist_ok=True)
        (overlay / "npsp.toml").write_text(f'base_url = "{sim.base_url}"\n')
        server_log = tmp_path / "server.log"
        with server_log.open("wb") as out:
            server = subprocess.Popen(
                lienthong("serve", "--port", str(port), "--workers", "1", "--log-level",
                          "warning"), env=env, stdout=out, stderr=subprocess.STDOUT)
        with worker_log.open("wb") as out:
            worker = subprocess.Popen(lienthong("worker", "npsp"), env=env, stdout=out,
                                      stderr=subprocess.STDOUT)
        try:
            def ready() -> bool:
                assert server.poll() is None, server_log.read_text()
                assert worker.poll() is None, worker_log.read_text()
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code != 200:
                        return False
                except httpx.TransportError:
                    return False
                return consumers(settings, "npsp") == 1

            wait_for(ready, timeout=60, interval=0.1, message="the server and the worker")
            yield Running(base, sim, store, spy, settings, worker_log)
        finally:
            stop(worker)
            stop(server)


def consumers(settings: Settings, destination: str) -> int:
    """The fewest consumers on any of the destination's work queues (its partitions)."""
    queues = Topology.from_settings(settings).work_queues(destination)
    conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    try:
        channel = conn.channel()
        return min(int(channel.queue_declare(q, passive=True).method.consumer_count)
                   for q in queues)
    finally:
        conn.close()


def test_interleaved_callbacks_and_rest_changes_all_reach_the_portal_in_order(
    running: Running, keys: Keys,
) -> None:
    code = new_code()
    signer = keys.signer(keys.client)
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}

    def rest(path: str, data: dict[str, Any], event_type: str) -> None:
        body = json.dumps(data, ensure_ascii=False).encode()
        answer = http.post(path, content=body,
                           headers={**headers, "X-Signature": sign(signer, body, event_type)})
        assert answer.status_code == 202, answer.text

    def callback(update: dict[str, Any]) -> None:
        answer = http.post(CALLBACK, json=update, headers={"X-API-Key": API_KEY})
        assert answer.status_code == 202, answer.text

    def change(status: int) -> None:
        rest(f"/v1/dossiers/{code}/status",
             {"dossier_code": code, "status": status, "at": "2025-01-02T09:00:00"}, STATUS)

    with httpx.Client(base_url=running.base, timeout=10) as http:
        rest("/v1/dossiers", dossier(code), SUBMITTED)
        callback(status_update(code, "DA_TIEP_NHAN", sequence=5001))
        change(4)
        callback(status_update(code, "YEU_CAU_BO_SUNG"))  # no counter: time in ms before
        change(4)
        callback(status_update(code, "DA_CO_KET_QUA", sequence=5002))
        change(10)
    expected = ["1", "2", "4", "5", "4", "9", "10"]

    def synced() -> list[str]:
        return [s for call in running.sim.calls("DongBoHoSoMC") if code in call["codes"]
                for s in call["statuses"]]

    wait_for(lambda: len(synced()) >= len(expected), timeout=60,
             message=f"seven syncs of {code} at the portal (worker log: "
                     f"{running.worker_log})")
    assert synced() == expected
    # The simulator lists a call before it applies it: its record is waited for, not read once.
    wait_for(lambda: (running.sim.dossier(code) or {}).get("TrangThaiHoSo") == "10",
             timeout=10, message=f"the portal's record of {code} at status 10")
    published = [e for e in (Envelope.from_bytes(body) for _, body in
                             drain(running.settings.amqp_url, running.spy)) if e.subject == code]
    assert [e.sequence for e in published] == [1, 2, 3, 4, 5, 6, 7]
    assert [e.extensions.get("systemsequence") for e in published] == [
        None, "5001", None, None, None, "5002", None]
    # The consumer records the sequence once the handler has returned, after the portal
    # answered the seventh sync: wait for the write rather than race it.
    wait_for(lambda: running.store.last_sequence("npsp", code) == 7, timeout=30,
             message=f"the portal's last applied sequence of {code} recorded as 7")
    assert running.store.last_sequence("npsp", code) == 7
    assert [e for e in running.store.timeline(code) if e.event_type == SKIPPED] == []
