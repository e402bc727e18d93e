"""A store that cannot be written for a while: a real read-only store (PostgreSQL with its
sessions made read-only; SQLite on a file system remounted read-only) under the hub's portal
worker and the timeline recorder, the portal simulator counting calls. No dossier reaches the
portal twice: results already obtained are kept and their recording retried as writes, and no
new delivery is started until the store takes writes again. ``/readyz`` says the store is not
writable meanwhile."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from conftest import PG_ADMIN_URL
from test_api_support import Keys, build_hub, keys_fixture  # noqa: F401 - fixture
from test_delivery_order import Portal, codes, portal  # noqa: F401 - fixture

from hub import runtime
from hub.model import Status
from hub.store import Store
from hub.testing.waiting import eventually


@dataclass
class Switch:
    """A store URL and how to make its database read-only and writable again."""

    url: str
    read_only: Callable[[], None]
    writable: Callable[[], None]


def _immutable(on: bool, *paths: Path) -> None:
    # The database and its write-ahead log, not its shared-memory index (mapped by SQLite:
    # an immutable mapping is a bus error, not a write error).
    done = subprocess.run(["chattr", "+i" if on else "-i", *map(str, paths)],
                          capture_output=True, text=True, timeout=60)
    if done.returncode:
        pytest.fail(f"chattr failed ({done.stderr.strip()}); this test needs root and a file "
                    "system with the immutable attribute to make a SQLite store read-only")


@pytest.fixture(params=["sqlite", "postgresql"])
def switch(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Switch]:
    if request.param == "sqlite":
        # The files made immutable: every write fails at the file system, reads go on.
        db = tmp_path / "store" / "hub.db"
        files = (db, db.with_name("hub.db-wal"))
        try:
            yield Switch(f"sqlite:///{db}", lambda: _immutable(True, *files),
                         lambda: _immutable(False, *files))
        finally:
            subprocess.run(["chattr", "-i", *map(str, files)], capture_output=True)
        return
    name = f"lt_ro_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def mode(on: bool) -> None:
        # New sessions take the database's default; the existing ones are ended so that the
        # store's pool reconnects into it.
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = '
                          f'{"on" if on else "off"}')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))

    base = PG_ADMIN_URL.rsplit("/", 1)[0].split("://", 1)[1]
    try:
        yield Switch(f"postgresql+psycopg://{base}/{name}", lambda: mode(True),
                     lambda: mode(False))
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_no_dossier_reaches_the_portal_twice_while_the_store_is_read_only(
    portal: Portal, switch: Switch, keys: Keys,  # noqa: F811 - fixtures
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hub.broker.consumer")
    first, second = codes(120, day=4), codes(60, day=5)
    statuses = [Status.NEW, Status.RECEIVED]
    store = Store.open(switch.url)
    hub = build_hub(portal.settings, keys, switch.url)  # the REST app, for its /readyz
    hub.http.__enter__()

    def inserts() -> int:
        return sum(1 for call in portal.sim.calls("DongBoHoSoMC")
                   if call["isUpdating"] == "False")

    async def scenario() -> list[runtime.Worker]:
        workers = runtime.build_workers(portal.settings, ["npsp"], store=store)
        worker = workers[0].consumer
        for w in workers:
            w.consumer.start()
        for w in workers:
            await w.consumer.wait_consuming()
        try:
            await portal.publish([e for c in first for e in portal.events(c, statuses)])
            await eventually(lambda: inserts() >= 20, 30, "deliveries under way")
            await asyncio.to_thread(switch.read_only)
            await eventually(lambda: not worker.writable, 30, "the worker to pause")
            ready = await asyncio.to_thread(hub.http.get, "/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["store"].startswith("not writable: "), ready.json()
            # What arrives now waits: nothing is called while nothing could be recorded.
            await portal.publish([e for c in second for e in portal.events(c, statuses)])
            await eventually(lambda: worker.stats.received >= 2 * len(first + second), 30,
                             "the new deliveries received")
            await eventually(lambda: portal.sim.state.active == 0, 30, "calls in flight")
            assert not worker.writable
            assert not {c for call in portal.sim.calls() for c in call["codes"]} & set(second)
            await asyncio.to_thread(switch.writable)
            await eventually(lambda: portal.delivered(first + second, 2), 90, "every event")
            await eventually(lambda: all(w.consumer.stats.handled == 2 * len(first + second)
                                         for w in workers), 60, "every delivery recorded")
        finally:
            for w in workers:
                await w.stop()
        return workers

    try:
        [worker, recorder] = asyncio.run(scenario())
        assert hub.http.get("/readyz").json()["checks"]["store"] == "ok"
        # Every result was recorded in the end: sequences, timeline, processed ids.
        assert all(store.last_sequence("npsp", c) == 2 for c in first + second)
        assert all(len(store.timeline(c)) == 2 for c in first[:10] + second[:10])
    finally:
        hub.stop()
        hub.store.close()
        store.close()
    calls = Counter((c, call["isUpdating"]) for call in portal.sim.calls("DongBoHoSoMC")
                    for c in call["codes"])
    # Exactly once: one insert and one update per dossier, none repeated.
    assert set(calls.values()) == {1}, {k: n for k, n in calls.items() if n > 1}
    assert len(calls) == 2 * len(first + second)
    assert portal.sim.regressions == []
    stats = worker.consumer.stats
    # The failure path was taken: the worker paused, and recordings were written again.
    assert stats.store_pauses >= 1 and stats.rewrites >= 1
    assert stats.retried == 0 and stats.dead == 0, [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("retry:")]
    assert recorder.consumer.stats.handled == 2 * len(first + second)
