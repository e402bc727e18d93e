"""The fan-out runs inside ``lienthong worker``: a province that runs ``lienthong serve`` and
``lienthong worker`` has its ministries' subscriptions fed, with nothing else to start. Two
worker processes share the feed, and a ministry gets each event once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from subscriptions_support import BHXH, H56, Hub, dossier, drop_users, make_hub, publish
from test_runtime_workers import _two_free_ports

from hub import runtime
from hub.adapters import AdapterSpec
from hub.broker import declare
from hub.broker.topology import Topology
from hub.settings import Settings
from hub.signing import TrustStore, generate
from hub.store import Store
from hub.subscriptions import service
from hub.subscriptions.fanout import FANOUT
from hub.testing.broker import delete_queues, depth, read_all
from hub.testing.processes import wait_until_ready
from hub.testing.waiting import wait_for

# The recorder as shipped; the portal's queue bound to nothing, so that the events of the test
# reach the timeline and the subscriptions' feed only (no portal to call here).
TOPOLOGY = """
[destinations.timeline]
bindings = ["#"]
ordered = false

[destinations.npsp]
bindings = ["nothing.#"]
"""


@pytest.fixture
def hub(settings: Settings, tmp_path: Path) -> Iterator[tuple[Hub, Topology]]:
    topology_file = tmp_path / "worker-topology.toml"
    topology_file.write_text(TOPOLOGY)
    made = make_hub(settings, topology_file=topology_file)
    topology = Topology.from_settings(made.settings)
    declare.apply(topology, made.settings.broker_urls)
    try:
        yield made, topology
    finally:
        drop_users(made.settings)
        delete_queues(made.settings.amqp_url, [q.name for q in topology.queues])


def _env(s: Settings, port: int) -> dict[str, str]:
    return {**os.environ, "LIENTHONG_DATA_DIR": str(s.data_dir),
            "LIENTHONG_AMQP_URLS": s.amqp_url, "LIENTHONG_NAME_PREFIX": s.name_prefix,
            "LIENTHONG_TOPOLOGY_FILE": str(s.topology_file),
            "LIENTHONG_WORKER_METRICS_PORT": str(port),
            "LIENTHONG_SUBSCRIPTION_STATUS_INTERVAL": "0.5",
            "NPSP_USERNAME": "hub", "NPSP_PASSWORD": "secret"}


def _worker_feeding_bhxh(s: Settings, *options: str) -> tuple[subprocess.Popen[bytes], int]:
    """A subscription of BHXH to H56's submitted dossiers, and ``lienthong worker npsp`` with
    ``options`` started beside it; its metrics port (and the next one) are returned."""
    with Store.open(s.store_url) as store:
        service.add(s, store, "bhxh", BHXH, ["vn.gov.dossier.submitted"], [H56], [])
    port = _two_free_ports()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from hub.cli import main; main()", "worker", "npsp", *options],
        env=_env(s, port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, port


def _metric(text: str, name: str, **labels: str) -> float:
    """The sample ``name`` with ``labels`` in a Prometheus text exposition (0 if absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def test_two_worker_processes_feed_a_subscription_each_event_once(
        hub: tuple[Hub, Topology]) -> None:
    made, _ = hub
    s = made.settings
    sn = service.names_of(s)
    proc, port = _worker_feeding_bhxh(s, "--processes", "2")
    bases = [f"http://127.0.0.1:{port + i}" for i in range(2)]

    def metrics(base: str) -> str:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"the worker exited: {out}")
        try:
            return httpx.get(f"{base}/metrics", timeout=5).text
        except httpx.TransportError:
            return ""

    sent = [dossier(i) for i in range(1, 301)]
    try:
        # Each process consumes the feed (the fan-out among its consumers).
        for base in bases:
            wait_for(lambda base=base: _metric(metrics(base), "lienthong_worker_consuming",
                                               consumer=FANOUT) == 1.0,
                     timeout=60, interval=0.2, message=f"the fan-out of {base} consuming")
        publish(made, sent)
        wait_for(lambda: depth(s.amqp_url, sn.queue("bhxh")) == len(sent)
                 and depth(s.amqp_url, sn.feed) == 0, timeout=60, interval=0.2,
                 message="every event copied into bhxh's queue")
        handled = [_metric(metrics(b), "lienthong_worker_messages_total", consumer=FANOUT,
                           outcome="handled") for b in bases]
        # The two processes shared the feed: together they handled each event once.
        assert sum(handled) == len(sent), handled
        print(f"fan-out deliveries handled by each process: {handled}")
        # The status each fan-out keeps is in its process's metrics.
        wait_for(lambda: _metric(metrics(bases[0]), "lienthong_subscription_messages",
                                 ministry=BHXH, subscription="bhxh") == len(sent),
                 timeout=60, interval=0.5, message="the subscription's depth in the metrics")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert code == 0
    got = read_all(s.amqp_url, sn.queue("bhxh"))
    ids = [m.message_id for m in got]
    assert len(ids) == len(sent) and set(ids) == {e.id for e in sent}  # each once
    assert all(json.loads(m.body)["data"]["applicant"] == {"identity_number": "001090012345"}
               for m in got)  # projected, as the fan-out does in any process


def test_the_recorder_and_the_fanout_of_a_worker_share_decoded_envelopes_the_adapters_not(
        hub: tuple[Hub, Topology]) -> None:
    """One decoding of each event for the recorder and the fan-out (both only read it); an
    adapter's worker decodes its own (hub.broker.consumer.SharedEnvelopes)."""
    made, topology = hub
    s = made.settings
    npsp = AdapterSpec(name="npsp", description="npsp", bindings=["nothing.#"],
                       make_handler=lambda ctx: runtime.nothing)
    with Store.open(s.store_url) as store:
        workers = runtime.build_workers(s, ["npsp"], store=store, adapters={"npsp": npsp},
                                        fanout=True, topology=topology)
        by_name = {w.spec.name: w.consumer for w in workers}
        assert set(by_name) == {"npsp", "timeline", FANOUT}
        shared = by_name["timeline"].envelopes
        assert shared is not None and shared.readers == 2
        assert by_name[FANOUT].envelopes is shared
        assert by_name["npsp"].envelopes is None
        recorder_only = runtime.build_workers(s, ["npsp"], store=store, adapters={"npsp": npsp},
                                              topology=topology)
        assert all(w.consumer.envelopes is None for w in recorder_only)


def test_a_worker_without_the_feed_declared_says_so_and_delivers_the_rest(
        settings: Settings, tmp_path: Path) -> None:
    """A hub whose topology was declared without the subscriptions' part: the worker starts,
    warns, and its adapters run."""
    topology_file = tmp_path / "worker-topology.toml"
    topology_file.write_text(TOPOLOGY)
    s = settings.model_copy(update={"topology_file": topology_file})
    material = generate(s.hub_id)
    material.save(s.keys_dir)
    TrustStore(s.trust_dir).add(material.certificate_pem())
    topology = Topology.from_settings(s)
    declare.apply(topology, s.broker_urls)
    port = _two_free_ports()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from hub.cli import main; main()", "worker", "npsp"],
        env=_env(s, port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(proc, f"http://127.0.0.1:{port}")
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        delete_queues(s.amqp_url, [q.name for q in topology.queues])
    assert proc.returncode == 0
    text = out.decode()
    assert "warning: the subscriptions' fan-out not started" in text
    assert f"{s.name_prefix}.fanout is not declared: run `lienthong topology apply`" in text
    [running] = [line for line in text.splitlines() if line.startswith("running ")]
    assert "npsp" in running and FANOUT not in running


def test_a_worker_told_no_fanout_leaves_the_feed_to_others(hub: tuple[Hub, Topology]) -> None:
    """``--no-fanout``: a province that runs the fan-out in a process of its own (``lienthong
    subscriptions serve``) keeps its workers off the feed; what reaches the feed waits there."""
    made, _ = hub
    s = made.settings
    sn = service.names_of(s)
    proc, port = _worker_feeding_bhxh(s, "--no-fanout")
    sent = [dossier(i) for i in range(1, 11)]
    try:
        wait_until_ready(proc, f"http://127.0.0.1:{port}")
        publish(made, sent)
        # The recorder of the same worker takes every event: once it has, the feed's copies
        # have been routed too, and nobody consumed them.
        wait_for(lambda: depth(s.amqp_url, sn.feed) == len(sent), timeout=60, interval=0.2,
                 message="every event in the feed")
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert _metric(metrics, "lienthong_worker_consuming", consumer=FANOUT) == 0.0
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    [running] = [line for line in out.decode().splitlines() if line.startswith("running ")]
    assert "npsp" in running and FANOUT not in running
    assert depth(s.amqp_url, sn.feed) == len(sent)
    assert depth(s.amqp_url, sn.queue("bhxh")) == 0
