"""Deliveries to the portal at the speed of the portal, in order per dossier: the hub's real
portal worker (hub.runtime.build_workers, the timeline recorder beside it, or `lienthong
worker npsp` processes) on RabbitMQ, with the partitions and concurrency of the shipped
topology file, and the portal simulator answering each call after 100 ms. The simulator
counts the calls it answers at once and every sync that moves a dossier backwards."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from npsp_support import sample_dossier, sample_status

from adapters.npsp.simulator import NpspSimulator
from hub import runtime
from hub.broker import declare
from hub.broker.messages import Outgoing
from hub.broker.publisher import Publisher
from hub.broker.topology import Topology
from hub.envelope import Envelope
from hub.model import Status
from hub.settings import Settings
from hub.signing import Signer
from hub.store import Store
from hub.testing.broker import delete_queues
from hub.testing.keys import hub_keys, signer_for
from hub.testing.waiting import eventually, wait_for

PROVINCE = "VN:GOV:000.00.00.H56:igate"
SUBMITTED = "vn.gov.dossier.submitted"
STATUS = "vn.gov.dossier.status-changed"
LATENCY = 0.1


@dataclass
class Portal:
    settings: Settings
    topology: Topology
    sim: NpspSimulator
    province: Signer

    def events(self, code: str, statuses: Sequence[Status]) -> list[Envelope]:
        """The dossier's submission (sequence 1, status 1) and then its status changes."""
        out = []
        for seq, status in enumerate(statuses, start=1):
            if status == Status.NEW:
                data = sample_dossier(code).model_dump(mode="json")
                kind = SUBMITTED
            else:
                data = sample_status(status, code).model_dump(mode="json")
                kind = STATUS
            out.append(Envelope.new(source=PROVINCE, type=kind, subject=code, data=data,
                                    agency="000.00.00.H56", procedure="2.002492",
                                    sequence=seq))
        return out

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        async with Publisher(self.settings.amqp_url, self.settings) as pub:
            await asyncio.gather(*(pub.publish_nowait(Outgoing.signed(
                env, self.province, self.topology.names.events)) for env in envelopes))

    def statuses(self, code: str) -> list[str]:
        """The statuses the portal received for the dossier, in the order they arrived."""
        return [s for call in self.sim.calls("DongBoHoSoMC") if code in call["codes"]
                for s in call["statuses"]]

    def delivered(self, codes: Sequence[str], count: int) -> bool:
        return all(len(self.statuses(c)) >= count for c in codes)


def codes(n: int, day: int = 1) -> list[str]:
    return [f"000.00.00.H56-2502{day:02d}-{i:04d}" for i in range(1, n + 1)]


def portal_config(settings: Settings, base_url: str) -> None:
    """The portal adapter's configuration overlay: the simulator, one try per delivery (a
    failure goes to the retry tiers), no rate limit, a breaker that does not open, and a
    timeout no answer of the simulator reaches on a busy machine (a call that timed out was
    received all the same, and would be made again)."""
    overlay = settings.data_dir / "adapters"
    overlay.mkdir(parents=True, exist_ok=True)
    (overlay / "npsp.toml").write_text(
        f'base_url = "{base_url}"\n\n[policy]\ntimeout = 30.0\nattempts = 1\n'
        "rate_per_second = 0.0\nbreaker_failures = 100000\n", encoding="utf-8")


@pytest.fixture
def portal(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Portal]:
    monkeypatch.setenv("NPSP_USERNAME", "hub")
    monkeypatch.setenv("NPSP_PASSWORD", "secret")
    province = signer_for(PROVINCE, hub_keys(settings))
    topology = Topology.from_settings(settings)  # the shipped topology file: npsp partitioned
    assert len(topology.work_queues("npsp")) == 4
    declare.apply(topology, settings.amqp_url)
    with NpspSimulator() as sim:
        sim.faults.slow_seconds = LATENCY
        portal_config(settings, sim.base_url)
        yield Portal(settings, topology, sim, province)
    delete_queues(settings.amqp_url, [q.name for q in topology.queues])


async def deliver(portal: Portal, store: Store, envelopes: Sequence[Envelope],
                  done: Any, timeout: float = 60.0) -> list[runtime.Worker]:
    """Run the portal's worker and the timeline recorder, publish, wait for ``done()``."""
    workers = runtime.build_workers(portal.settings, ["npsp"], store=store)
    for w in workers:
        w.consumer.start()
    for w in workers:
        await w.consumer.wait_consuming()
    try:
        await portal.publish(envelopes)
        await eventually(lambda: bool(done()), timeout, "the portal to have every event")
    finally:
        for w in workers:
            await w.stop()
    return workers


def test_many_dossiers_reach_the_portal_concurrently_each_in_order(
    portal: Portal, tmp_path: Path
) -> None:
    dossiers = codes(60)
    statuses = [Status.NEW, Status.RECEIVED, Status.PROCESSING]
    # Published event by event across dossiers, as a province's day interleaves them.
    events = [e for round_ in zip(*(portal.events(c, statuses) for c in dossiers), strict=True)
              for e in round_]
    with Store.open(f"sqlite:///{tmp_path / 'hub.db'}") as store:
        [worker, recorder] = asyncio.run(deliver(
            portal, store, events, lambda: portal.delivered(dossiers, 3)))
        assert len(store.timeline(dossiers[0])) == 3  # the recorder's batched writes
        assert store.last_sequence("npsp", dossiers[-1]) == 3
    assert worker.consumer.queues == portal.topology.work_queues("npsp")
    assert worker.consumer.ordered and worker.consumer.concurrency == 512  # the shipped topology's
    # Many dossiers' calls at once (one at a time would take 60 * 0.5 s)...
    assert portal.sim.most_concurrent > 4
    # ...and each dossier's in the order it was published, exactly once.
    assert {c: portal.statuses(c) for c in dossiers} == {c: ["1", "2", "4"] for c in dossiers}
    assert portal.sim.regressions == []
    assert worker.consumer.stats.handled == len(events)
    assert recorder.consumer.stats.handled == len(events)


def test_the_recorder_absorbs_an_event_delivered_twice_by_its_timeline_alone(
    portal: Portal, tmp_path: Path
) -> None:
    """The recorder keeps no processed ids (a timeline row is unique by dossier and message
    id): the same signed event delivered twice is handled twice and written once."""
    dossiers = codes(5, day=3)
    events = [e for c in dossiers for e in portal.events(c, [Status.NEW, Status.RECEIVED])]
    signed = [Outgoing.signed(e, portal.province, portal.topology.names.events) for e in events]
    with Store.open(f"sqlite:///{tmp_path / 'hub.db'}") as store:

        async def scenario() -> list[runtime.Worker]:
            workers = runtime.build_workers(portal.settings, ["npsp"], store=store)
            for w in workers:
                w.consumer.start()
            for w in workers:
                await w.consumer.wait_consuming()
            async with Publisher(portal.settings.amqp_url, portal.settings) as pub:
                await asyncio.gather(*(pub.publish_nowait(o) for o in signed + signed))
            both = 2 * len(events)
            await eventually(lambda: all(w.consumer.stats.handled
                                         + w.consumer.stats.duplicates == both
                                         for w in workers),
                             30, "both copies of every event taken")
            for w in workers:
                await w.stop()
            return workers

        [worker, recorder] = asyncio.run(scenario())
        assert {c: len(store.timeline(c)) for c in dossiers} == {c: 2 for c in dossiers}
        assert all(store.processed.lookup("recorder:timeline", e.id) is None for e in events)
        assert all(store.processed.lookup("worker:npsp", e.id) is not None for e in events)
    assert (recorder.consumer.stats.handled, recorder.consumer.stats.duplicates) == (
        2 * len(events), 0)
    # The portal's worker absorbs the copies by its processed ids: each event reached it once.
    assert worker.consumer.stats.handled == len(events)
    assert {c: portal.statuses(c) for c in dossiers} == {c: ["1", "2"] for c in dossiers}


def test_a_dossier_whose_call_fails_waits_in_a_retry_tier_and_its_next_event_follows(
    portal: Portal, tmp_path: Path
) -> None:
    dossiers = codes(20, day=2)
    late = dossiers[5]
    statuses = [Status.NEW, Status.RECEIVED, Status.PROCESSING]
    plans = {c: portal.events(c, statuses) for c in dossiers}
    with Store.open(f"sqlite:///{tmp_path / 'hub.db'}") as store:

        async def scenario() -> list[runtime.Worker]:
            workers = runtime.build_workers(portal.settings, ["npsp"], store=store,
                                            recorder=False)
            [worker] = workers
            worker.consumer.start()
            await worker.consumer.wait_consuming()
            await portal.publish([plans[c][0] for c in dossiers])
            await eventually(lambda: portal.delivered(dossiers, 1), 30, "the submissions")
            # The portal fails the next call about one dossier: its status change (the
            # lookup before it) goes to a retry tier, and its last event must wait for it.
            portal.sim.fail_dossier(late)
            await portal.publish([e for c in dossiers for e in plans[c][1:]])
            await eventually(lambda: portal.delivered(dossiers, 3), 30, "every event")
            await worker.stop()
            return workers

        [worker] = asyncio.run(scenario())
        assert store.held_load(worker.consumer.queues[0]) == {}
    assert portal.statuses(late) == ["1", "2", "4"]
    assert all(portal.statuses(c) == ["1", "2", "4"] for c in dossiers)
    assert portal.sim.regressions == []
    stats = worker.consumer.stats
    assert (stats.retried, stats.held, stats.dead) == (1, 1, 0)


# -- two worker processes ------------------------------------------------------------------


def worker_process(settings: Settings, store_url: str, index: int, log: Path,
                   ) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LIENTHONG_DATA_DIR": str(settings.data_dir),
        "LIENTHONG_AMQP_URL": settings.amqp_url,
        "LIENTHONG_NAME_PREFIX": settings.name_prefix,
        "LIENTHONG_STORE_URL": store_url,
        "LIENTHONG_RETRY_TIERS": "[0.5, 1, 2]",
        "LIENTHONG_WORKER_METRICS_PORT": "0",
        # Long enough for the other process to start and take its own partitions first.
        "LIENTHONG_STANDBY_DELAY": "20",
        "LIENTHONG_WORKER_PROCESS": str(index),
        "LIENTHONG_WORKER_PROCESSES": "2",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", "from hub.cli import main; main()", "worker", "npsp", "-v"],
            env=env, stdout=out, stderr=subprocess.STDOUT)


def delivered_by(log: Path, dossiers: Sequence[str]) -> set[str]:
    """The dossiers a worker's log says it sent to the portal."""
    text = log.read_text(errors="replace")
    return {c for c in dossiers if f"dossier {c} " in text or f"dossier {c}:" in text}


def test_two_worker_processes_share_the_partitions_and_one_takes_over_when_the_other_dies(
    portal: Portal, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path / 'hub.db'}"
    Store.open(store_url).close()  # migrated once, before two processes open it
    dossiers = codes(40, day=3)
    statuses = [Status.NEW, Status.RECEIVED]
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    procs = [worker_process(portal.settings, store_url, i, log) for i, log in enumerate(logs)]
    try:
        def consuming() -> bool:
            for proc, log in zip(procs, logs, strict=True):
                assert proc.poll() is None, log.read_text()
            return all("consuming" in log.read_text() for log in logs)

        wait_for(consuming, timeout=60, message="both workers consuming")
        asyncio.run(portal.publish([portal.events(c, statuses)[0] for c in dossiers]))
        # The simulator counts a call when it arrives; the worker logs it once answered.
        wait_for(lambda: all(delivered_by(log, dossiers) for log in logs) and set().union(
            *(delivered_by(log, dossiers) for log in logs)) == set(dossiers), timeout=60,
            message="the submissions")
        first, second = (delivered_by(log, dossiers) for log in logs)
        # Each process had its home partitions: both delivered, no dossier by both.
        assert first and second and not first & second and first | second == set(dossiers)

        asyncio.run(portal.publish([portal.events(c, statuses)[1] for c in dossiers]))
        wait_for(lambda: sum(len(portal.statuses(c)) for c in dossiers) > len(dossiers),
                 timeout=60, message="the status changes to start")
        procs[0].send_signal(signal.SIGKILL)  # mid-flight: its partitions go to the other
        procs[0].wait(timeout=30)
        wait_for(lambda: portal.delivered(dossiers, 2), timeout=90,
                 message="every status change, the dead worker's too")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=60)
    # The survivor delivered the first worker's dossiers after it died.
    assert delivered_by(logs[1], dossiers) & first
    for c in dossiers:
        got = portal.statuses(c)
        # A call the dead worker made and could not acknowledge may be made again; never
        # out of order.
        assert got[0] == "1" and set(got[1:]) == {"2"}, (c, got)
    assert portal.sim.regressions == []
