"""What operators watch, through `lienthong serve` and RabbitMQ: /readyz names the keeper, every
circuit (the process's own and those the workers report) and every certificate (warnings that
inform, the status still decided by store and broker), and /metrics covers the pipeline: dead
letters parked by reason and the oldest one's age, queue depths and consumers, circuits,
certificates, the alert thresholds, and a work queue's oldest message dated from the broker's
count of what was published."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pika
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_api_support import API_KEY, CLIENT_ID, Keys, keys_fixture  # noqa: F401
from test_console_api import dossier_env, parked_row

from hub import circuits
from hub.broker import declare
from hub.broker.destinations import discover_destinations
from hub.broker.topology import Topology
from hub.cli.clients import client_block
from hub.console.health import BrokerView, PipelineCollector, QueueState
from hub.console.keeper import Keeper
from hub.outbound import CallPolicy, PolicyConfig
from hub.settings import Settings
from hub.signing import TrustStore, generate
from hub.simulation import free_port
from hub.store import Store
from hub.store.circuitboard import StoreCircuitBoard
from hub.testing.broker import delete_queues
from hub.testing.processes import serving
from hub.testing.waiting import wait_for


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def lienthong(*args: str) -> list[str]:
    return [sys.executable, "-c", "from hub.cli import main; main()", *args]


def test_readiness_and_metrics_for_operators(settings: Settings, keys: Keys,
                                             tmp_path: Path) -> None:
    """Through the real door: `lienthong serve` on the test's store and broker. The circuit is
    one this test's process reports to the store's board, as a worker process does (the
    server calls no system: it shows what the workers report)."""
    settings = settings.model_copy(update={"alert_certificate_days": 30.0,
                                           "alert_dead_letters_per_hour": 7})
    expiring = generate("VN:GOV:000.00.00.H56:postal", days=3)
    TrustStore(settings.trust_dir).add(expiring.certificate_pem())
    keys.hub.save(settings.keys_dir)
    topology = Topology.from_settings(settings, discover_destinations()[0])
    declare.apply(topology, settings.broker_urls)
    store_url = f"sqlite:///{tmp_path / 'hub.db'}"
    store = Store.open(store_url)
    sender = keys.signer(keys.client)
    with store.begin() as tx:
        tx.dead_letter_add(**parked_row(settings, dossier_env(51), sender,
                                        code="system.rejected", reason="no"))
    # A circuit of this process, opened by failures.
    policy = CallPolicy("portal-x", PolicyConfig(breaker_failures=2, breaker_reset=600))
    policy.breaker.failure()
    policy.breaker.failure()
    clients = tmp_path / "clients.toml"
    clients.write_text(client_block(CLIENT_ID, "igate", ["vn.gov.dossier.*"], ["000.00.00.H56*"],
                                    api_key=API_KEY, oauth_client_id=None, oauth_secret=None,
                                    cert_sha256=[]))
    env = {
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        "LIENTHONG_DATA_DIR": str(settings.data_dir),
        "LIENTHONG_AMQP_URL": settings.amqp_url,
        "LIENTHONG_NAME_PREFIX": settings.name_prefix,
        "LIENTHONG_STORE_URL": store_url,
        "LIENTHONG_CLIENTS_FILE": str(clients),
        "LIENTHONG_ALERT_CERTIFICATE_DAYS": "30",
        "LIENTHONG_ALERT_DEAD_LETTERS_PER_HOUR": "7",
    }
    port = free_port()
    try:
        with serving(lienthong("serve", "--port", str(port), "--log-level", "warning"), port,
                     env=env) as base, httpx.Client(base_url=base, timeout=10) as http:
            # Reported now, not before the server started: a report ages (hub.circuits).
            asyncio.run(circuits.Reporter(StoreCircuitBoard(store.engine)).once())
            ready = http.get("/readyz")
            checks = ready.json()["checks"]
            assert checks["keeper"].startswith("warning: no keeper consumes")
            assert checks["circuit:portal-x"].startswith("warning: circuit open after 2")
            assert checks["certificate:VN:GOV:000.00.00.H56:postal"].startswith(
                "warning: expires in")
            assert ready.status_code == 200 or checks["broker"] != "ok"  # warnings do not decide
            text = http.get("/metrics").text
            got = samples(text)
            assert got[("lienthong_dead_letters_parked", (("kind", "refused"),))] == 1.0
            assert got[("lienthong_dead_letters_last_hour", ())] == 1.0
            assert got[("lienthong_alert_threshold", (("alert", "dead_letters_per_hour"),))] == 7
            assert got[("lienthong_circuit_state", (("destination", "portal-x"),))] == 2.0
            dead = (("queue", topology.names.dead), ("role", "dead"))
            assert got[("lienthong_queue_messages", dead)] == 0.0
            assert got[("lienthong_queue_consumers", dead)] == 0.0
            days = got[("lienthong_certificate_expiry_seconds",
                        (("system", "VN:GOV:000.00.00.H56:postal"),))] / 86400
            assert 2 < days <= 3

            # With a keeper consuming, the check says so (the broker view is cached briefly).
            stop = threading.Event()
            keeper = Keeper(settings, store)

            async def run_keeper() -> None:
                keeper.start()
                await asyncio.to_thread(stop.wait)  # until the test is done with it
                await keeper.stop()

            thread = threading.Thread(target=asyncio.run, args=(run_keeper(),))
            thread.start()
            try:
                wait_for(lambda: http.get("/readyz").json()["checks"]["keeper"] == "ok",
                         timeout=20, message="keeper seen by /readyz")
            finally:
                stop.set()
                thread.join(10)
    finally:
        delete_queues(settings.amqp_url, [q.name for q in topology.queues])
        store.close()
    assert policy.breaker.state == "open"  # alive until here: circuits are held weakly


def test_a_work_queue_s_oldest_message_is_dated_from_the_broker_s_count(
        settings: Settings, store: Store) -> None:
    topology = Topology.from_settings(settings, discover_destinations()[0])
    declare.apply(topology, settings.broker_urls)
    view = BrokerView(settings, topology, store.queue_ledger)
    queue = topology.work_queue("timeline")  # bound to every event

    def timeline() -> QueueState:
        [found] = [q for q in view.queues(fresh=True)[0] if q.name == queue]
        return found

    def publish(n: int) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            for _ in range(n):
                ch.basic_publish(topology.names.events, "vn.gov.dossier.submitted", b"{}")
        finally:
            conn.close()

    def age_when(condition: Callable[[QueueState], bool]) -> Callable[[], float | None]:
        def look() -> float | None:
            q = timeline()
            return q.oldest.seconds if q.oldest is not None and condition(q) else None
        return look

    try:
        assert timeline().oldest is None  # empty, and nothing counted yet
        publish(3)
        # The management API counts publishes every few seconds: the first look that sees
        # them dates them (a lower bound), and the age grows from there. Its statistics lag
        # further behind while the whole suite makes and drops queues on the same broker (30 s
        # ran out twice in full runs): the deadlines are generous, a passing run waits seconds.
        patience = 90
        first = wait_for(age_when(lambda q: q.messages == 3), timeout=patience,
                         message="the three published messages dated")
        assert timeline().oldest.at_least is False
        later = wait_for(age_when(lambda q: q.oldest.seconds >= first + 1), timeout=patience,
                         message="the age to grow")
        publish(2)  # newer messages do not make the oldest younger
        newer = wait_for(age_when(lambda q: q.messages == 5), timeout=patience,
                         message="five messages seen")
        assert newer >= later
        got = samples(make_text(settings, store, view))
        assert got[("lienthong_queue_oldest_age_seconds",
                    (("queue", queue), ("role", "work")))] >= newer
    finally:
        delete_queues(settings.amqp_url, [q.name for q in topology.queues])


def make_text(settings: Settings, store: Store, view: BrokerView) -> str:
    """The pipeline gauges as a scrape renders them."""
    registry = CollectorRegistry()
    registry.register(PipelineCollector(settings, store, view, StoreCircuitBoard(store.engine)))
    return generate_latest(registry).decode()
