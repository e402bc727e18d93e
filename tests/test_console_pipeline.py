"""The pipeline's health and metrics through the real doors: `lienthong serve` and `lienthong
worker npsp` as processes on one store and RabbitMQ, the portal simulator failing every call.
A dossier submitted over REST is relayed, delivered, retried and parked; the worker's circuit
opens. The server, which calls no system, reports the worker's circuit on /readyz, /metrics
and the console's page (hub.circuits: the worker's reports in the store), and both processes'
/metrics show the stages and outcomes of what went through them. When the worker stops, its
circuit leaves the server's /readyz."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_api_support import (  # noqa: F401 - fixtures
    API_KEY,
    CLIENT_ID,
    SUBMITTED,
    Keys,
    dossier,
    keys_fixture,
    new_code,
)
from test_api_support import sign as sign_request

from adapters.npsp.simulator import NpspSimulator
from hub.broker import declare
from hub.broker.topology import Topology
from hub.cli.clients import client_block
from hub.console.accounts import Accounts
from hub.settings import Settings
from hub.signing import TrustStore, generate
from hub.simulation import free_port
from hub.store import Store
from hub.testing.broker import delete_queues
from hub.testing.processes import serving
from hub.testing.waiting import wait_for

PASSWORD = "correct horse battery"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def value(got: Samples, name: str, **labels: str) -> float:
    return got.get((name, tuple(sorted(labels.items()))), 0.0)


def lienthong(*args: str) -> list[str]:
    return [sys.executable, "-c", "from hub.cli import main; main()", *args]


def ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"the worker exited: {log.read_text(errors='replace')}")
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


@pytest.fixture
def hub(settings: Settings, keys: Keys, tmp_path: Path) -> Iterator[dict[str, object]]:
    keys.hub.save(settings.keys_dir)
    trust = TrustStore(settings.trust_dir)
    trust.add(keys.hub.certificate_pem())
    trust.add(keys.client.certificate_pem())
    trust.add(generate("VN:GOV:000.00.00.H56:postal", days=3).certificate_pem())  # expiring
    clients = tmp_path / "clients.toml"
    clients.write_text(client_block(CLIENT_ID, "igate", ["vn.gov.dossier.*"], ["000.00.00.H56*"],
                                    api_key=API_KEY, oauth_client_id=None, oauth_secret=None,
                                    cert_sha256=[]))
    topology = Topology.from_settings(settings)
    declare.apply(topology, settings.broker_urls)
    store_url = f"sqlite:///{tmp_path / 'hub.db'}"
    with Store.open(store_url) as store:
        Accounts(store).add("ana", PASSWORD, "viewer")
    with NpspSimulator() as sim:
        sim.faults.fail_next = 1_000_000  # the portal answers 503 to everything
        overlay = settings.data_dir / "adapters"
        overlay.mkdir(parents=True, exist_ok=True)
        (overlay / "npsp.toml").write_text(
            f'base_url = "{sim.base_url}"\n\n[policy]\ntimeout = 5.0\nattempts = 1\n'
            "breaker_failures = 2\nbreaker_reset = 600.0\n", encoding="utf-8")
        env = {
            **os.environ,
            "LIENTHONG_DATA_DIR": str(settings.data_dir),
            "LIENTHONG_AMQP_URL": settings.amqp_url,
            "LIENTHONG_NAME_PREFIX": settings.name_prefix,
            "LIENTHONG_STORE_URL": store_url,
            "LIENTHONG_RETRY_TIERS": json.dumps(settings.retry_tiers),
            "LIENTHONG_CLIENTS_FILE": str(clients),
            "NPSP_USERNAME": "hub", "NPSP_PASSWORD": "secret",
            "LIENTHONG_ALERT_CERTIFICATE_DAYS": "30",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        server_port, worker_port = free_port(), free_port()
        worker_base = f"http://127.0.0.1:{worker_port}"
        worker_log = tmp_path / "worker.log"
        try:
            with serving(lienthong("serve", "--port", str(server_port), "--log-level",
                                   "warning"), server_port, timeout=60, env=env) as base:
                # The worker is started here, not by `serving`: the test stops it itself.
                with worker_log.open("wb") as out:
                    worker = subprocess.Popen(lienthong("worker", "npsp"), env={
                        **env, "LIENTHONG_WORKER_METRICS_PORT": str(worker_port)},
                        stdout=out, stderr=subprocess.STDOUT)
                try:
                    wait_for(lambda: ready(worker_base, worker, worker_log), timeout=60,
                             interval=0.2, message="the worker to be ready")
                    yield {"base": base, "worker": worker_base, "sim": sim, "keys": keys,
                           "worker_proc": worker}
                finally:
                    if worker.poll() is None:
                        stop(worker)
        finally:
            delete_queues(settings.amqp_url, [q.name for q in topology.queues])


def test_the_server_and_the_worker_show_the_pipeline_and_the_worker_circuit(
        hub: dict[str, object]) -> None:
    base, worker_base = str(hub["base"]), str(hub["worker"])
    keys = hub["keys"]
    assert isinstance(keys, Keys)
    signer = keys.signer(keys.client)
    body = json.dumps(dossier(new_code())).encode()
    answer = httpx.post(f"{base}/v1/dossiers", content=body, timeout=10, headers={
        "X-API-Key": API_KEY, "X-Signature": sign_request(signer, body, SUBMITTED),
        "Content-Type": "application/json"})
    assert answer.status_code == 202, answer.text

    # Two failed calls open the worker's circuit; the server hears of it from the store.
    def circuit_open_on_server() -> bool:
        checks = httpx.get(f"{base}/readyz", timeout=10).json()["checks"]
        return str(checks.get("circuit:npsp", "")).startswith("warning: circuit open after 2")

    wait_for(circuit_open_on_server, timeout=60, interval=0.2,
             message="the server's /readyz to show the worker's open circuit")
    # The console's page says so too, among what is wrong now.
    with httpx.Client(base_url=base, timeout=10, follow_redirects=True) as http:
        login = http.get("/console/login?lang=en")
        csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
        assert csrf is not None
        page = http.post("/console/login", data={"csrf": csrf.group(1), "username": "ana",
                                                  "password": PASSWORD})
        assert page.status_code == 200, page.text
        warnings = re.search(r'<ul id="warnings">(.*?)</ul>', page.text, re.S)
        assert warnings is not None, page.text
        assert "<strong>circuit:npsp</strong>: circuit open after 2" in warnings.group(1)
    # The worker's keeper consumes the dead letters; it may start after the portal's consumer
    # has already failed twice, and the server looks at the broker at most every 5 s.
    wait_for(lambda: httpx.get(f"{base}/readyz", timeout=10).json()["checks"]["keeper"] == "ok",
             timeout=30, interval=0.2, message="the server's /readyz to see the worker's keeper")
    checks = httpx.get(f"{base}/readyz", timeout=10).json()["checks"]
    assert checks["certificate:VN:GOV:000.00.00.H56:postal"].startswith("warning: expires in")
    server = samples(httpx.get(f"{base}/metrics", timeout=10).text)
    assert value(server, "lienthong_circuit_state", destination="npsp") == 2.0
    assert 0 <= value(server, "lienthong_circuit_report_age_seconds", destination="npsp") < 30
    for stage in ("check", "write", "commit"):
        assert value(server, "lienthong_intake_stage_seconds_count", stage=stage) >= 1, stage
    for stage in ("claim", "publish", "confirm", "mark"):
        assert value(server, "lienthong_relay_stage_seconds_count", stage=stage) >= 1, stage
    assert value(server, "lienthong_outbox_published_total") >= 1
    aged = {dict(k[1])["queue"] for k in server if k[0] == "lienthong_queue_oldest_age_seconds"}
    assert {q for q in aged if ".npsp" in q}, aged  # each work queue has its age series

    # The worker: the delivery retried through the tiers, then parked, and kept by the keeper.
    def parked() -> Samples:
        got = samples(httpx.get(f"{worker_base}/metrics", timeout=10).text)
        return got if value(got, "lienthong_consumer_messages_total", consumer="worker:npsp",
                            type=SUBMITTED, outcome="dead") == 1 else {}

    worker = wait_for(parked, timeout=60, interval=0.2, message="the dossier parked")
    assert value(worker, "lienthong_consumer_messages_total", consumer="worker:npsp",
                 type=SUBMITTED, outcome="retried") == 3  # one per tier
    assert value(worker, "lienthong_consumer_messages_total", consumer="recorder:timeline",
                 type=SUBMITTED, outcome="handled") == 1
    retries = {dict(k[1])["tier"]: dict(k[1])["reason_code"] for k, v in worker.items()
               if k[0] == "lienthong_retries_total" and v == 1}
    # Two calls failed (503), the third attempt found the circuit open: no call made.
    assert retries == {"0": "system.unavailable", "1": "system.unavailable",
                       "2": "server.circuit_open"}
    assert value(worker, "lienthong_circuit_state", destination="npsp") == 2.0
    for stage in ("verify", "handle"):
        assert value(worker, "lienthong_consumer_stage_seconds_count", consumer="worker:npsp",
                     stage=stage) == 4, stage  # the first delivery and its three retries
    assert value(worker, "lienthong_consumer_stage_seconds_count", consumer="recorder:timeline",
                 stage="record") == 1
    assert value(worker, "lienthong_consumer_stage_seconds_count", consumer="worker:npsp",
                 stage="ack") >= 1
    wait_for(lambda: value(samples(httpx.get(f"{base}/metrics", timeout=10).text),
                           "lienthong_dead_letters_parked", kind="retries exhausted") == 1,
             timeout=30, interval=0.2, message="the keeper to keep the dead letter")
    worker = samples(httpx.get(f"{worker_base}/metrics", timeout=10).text)
    assert value(worker, "lienthong_consumer_stage_seconds_count", consumer="keeper",
                 stage="record") >= 1

    # A worker that stops cleanly takes its circuits off: the server no longer shows them.
    proc = hub["worker_proc"]
    assert isinstance(proc, subprocess.Popen)
    assert stop(proc) == 0
    assert "circuit:npsp" not in httpx.get(f"{base}/readyz", timeout=10).json()["checks"]
