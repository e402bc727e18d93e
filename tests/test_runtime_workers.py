"""Which workers ``lienthong worker`` builds when an adapter cannot start; the health, readiness
and metrics endpoint of each worker process (a real ``lienthong worker --processes 2``, and the
readiness of a store that reads but does not write, on both databases)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from hub import runtime
from hub.adapters import AdapterContext, AdapterSpec, Event, Handler
from hub.broker import declare
from hub.broker.consumer import Consumer
from hub.broker.topology import Topology
from hub.envelope import Envelope
from hub.errors import ConfigError
from hub.settings import Settings
from hub.signing import load_signer
from hub.simulation import free_ports
from hub.store import Store
from hub.testing.broker import delete_queues
from hub.testing.keys import hub_keys
from hub.testing.processes import wait_until_ready
from hub.testing.store import scratch_url
from hub.workerhealth import WorkerHealth, serving


def _spec(name: str, *, secret_missing: bool = False) -> AdapterSpec:
    def make_handler(ctx: AdapterContext) -> Handler:
        if secret_missing:
            raise ConfigError(f"LIENTHONG_{name.upper()}_SECRET is not set; set it to the "
                              "secret the system gave", field="secret")

        async def handle(event: Event) -> list[Envelope]:
            return []

        return handle

    return AdapterSpec(name=name, description=name, bindings=[f"{name}.#"],
                       make_handler=make_handler)


@pytest.fixture
def built(tmp_path: Path) -> Any:
    settings = Settings(data_dir=tmp_path, name_prefix="ltworkers")
    hub_keys(settings)
    signer = load_signer(settings.keys_dir, settings.hub_id)
    verifier = runtime.queue_verifier(settings)
    store = Store.open(f"sqlite:///{tmp_path / 'hub.db'}")
    adapters = {"good": _spec("good"), "payment": _spec("payment", secret_missing=True)}

    def build(names: list[str] | None, skipped: list[tuple[str, ConfigError]] | None,
              **kw: Any) -> Any:
        kw.setdefault("recorder", False)
        return runtime.build_workers(settings, names, store=store, signer=signer,
                                     verifier=verifier, adapters=adapters, skipped=skipped,
                                     **kw)

    yield build
    store.close()


def test_every_adapter_asked_for_skips_the_one_that_cannot_start(built: Any) -> None:
    skipped: list[tuple[str, ConfigError]] = []
    workers = built(None, skipped)
    assert [w.spec.name for w in workers] == ["good"]
    [(name, error)] = skipped
    assert name == "payment"
    assert "LIENTHONG_PAYMENT_SECRET" in error.message


def test_an_adapter_named_must_start(built: Any) -> None:
    with pytest.raises(ConfigError, match="LIENTHONG_PAYMENT_SECRET"):
        built(["good", "payment"], [])


def test_without_a_place_to_report_skips_nothing_is_skipped(built: Any) -> None:
    with pytest.raises(ConfigError, match="LIENTHONG_PAYMENT_SECRET"):
        built(None, None)


def test_the_recorder_runs_where_the_topology_has_its_queue(built: Any, tmp_path: Path) -> None:
    """By default a worker runs the timeline recorder while the topology has its destination
    (as shipped), and not once the topology file disables it; asked for, it needs it."""
    disabled = tmp_path / "topology.toml"
    disabled.write_text("[destinations.timeline]\nbindings = [\"#\"]\nenabled = false\n")

    def names(recorder: bool | None, topology_file: Path | None = None) -> list[str]:
        topology = Topology.from_settings(Settings(name_prefix="ltworkers"),
                                          {"good": _spec("good")}, topology_file=topology_file)
        workers = built(["good"], None, recorder=recorder, topology=topology)
        return [w.spec.name for w in workers]

    assert names(None) == ["good", "timeline"]
    assert names(None, disabled) == ["good"]
    assert names(False) == ["good"]
    with pytest.raises(ConfigError, match="the timeline recorder has no work queue"):
        names(True, disabled)


# -- the endpoint of a worker process ------------------------------------------------------------


def _two_free_ports() -> int:
    """A port p with p + 1 free too (what --processes 2 listens on)."""
    return free_ports(2)


def _declared(settings: Settings) -> Topology:
    """The hub's keys made and its topology declared, as `lienthong worker` needs them."""
    hub_keys(settings)
    topology = Topology.from_settings(settings)
    declare.apply(topology, settings.broker_urls)
    return topology


def _worker_env(settings: Settings) -> dict[str, str]:
    """The environment of a `lienthong worker` process on the test's broker names."""
    return {
        **os.environ,
        "LIENTHONG_DATA_DIR": str(settings.data_dir),
        "LIENTHONG_AMQP_URLS": settings.amqp_url,
        "LIENTHONG_NAME_PREFIX": settings.name_prefix,
        "NPSP_USERNAME": "hub", "NPSP_PASSWORD": "secret",
    }


def test_each_worker_process_answers_health_readiness_and_metrics(
        settings: Settings, tmp_path: Path) -> None:
    topology = _declared(settings)
    port = _two_free_ports()
    env = _worker_env(settings) | {"LIENTHONG_WORKER_METRICS_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from hub.cli import main; main()", "worker", "npsp",
         "--processes", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    bases = [f"http://127.0.0.1:{port + i}" for i in range(2)]

    try:
        for base in bases:
            wait_until_ready(proc, base)
        for base in bases:
            assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
            readiness = httpx.get(f"{base}/readyz").json()
            assert readiness == {"status": "ready", "checks": {"store": "ok", "broker": "ok"}}
            metrics = httpx.get(f"{base}/metrics")
            assert metrics.headers["content-type"].startswith("text/plain")
            for consumer in ("worker:npsp", "recorder:timeline"):
                assert f'lienthong_worker_consuming{{consumer="{consumer}"}} 1.0' in metrics.text
            assert "# TYPE lienthong_retries_total counter" in metrics.text
        refused = httpx.post(f"{bases[0]}/metrics")
        assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
        assert httpx.get(f"{bases[0]}/nothing").json()["code"] == "client.not_found"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        delete_queues(settings.amqp_url, [q.name for q in topology.queues])
    assert code == 0


def test_the_recorder_runs_in_each_worker_or_in_a_process_of_its_own(
        settings: Settings) -> None:
    """`--no-recorder` leaves the timeline recorder out of a destination's worker process;
    `lienthong worker timeline` runs it alone (with the keeper): the portal's worker then
    spends its process on its deliveries."""
    topology = _declared(settings)
    port = _two_free_ports()
    env = _worker_env(settings)
    cli = [sys.executable, "-c", "from hub.cli import main; main()", "worker"]
    procs = [subprocess.Popen([*cli, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=env | {"LIENTHONG_WORKER_METRICS_PORT": str(port + i)})
             for i, args in enumerate((["npsp", "--no-recorder"], ["timeline"]))]
    try:
        consuming = []
        for i, proc in enumerate(procs):
            base = f"http://127.0.0.1:{port + i}"
            wait_until_ready(proc, base)
            text = httpx.get(f"{base}/metrics").text
            consuming.append({c for c in ("worker:npsp", "recorder:timeline")
                              if f'lienthong_worker_consuming{{consumer="{c}"}} 1.0' in text})
        assert consuming == [{"worker:npsp"}, {"recorder:timeline"}]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        codes = [proc.wait(timeout=30) for proc in procs]
        delete_queues(settings.amqp_url, [q.name for q in topology.queues])
    assert codes == [0, 0]
    both = subprocess.run([*cli, "timeline", "--no-recorder"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert both.returncode == 2
    assert "timeline names the timeline recorder, which --no-recorder leaves out" in both.stderr


def test_a_taken_port_stops_the_worker_before_it_consumes(settings: Settings) -> None:
    async def go() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            health = WorkerHealth([], Store.open(f"sqlite:///{settings.data_dir / 'h.db'}"))
            try:
                async with serving(health, "127.0.0.1", taken.getsockname()[1]):
                    raise AssertionError("listened on a taken port")
            finally:
                health.store.close()

    with pytest.raises(ConfigError, match="LIENTHONG_WORKER_METRICS_PORT") as caught:
        asyncio.run(go())
    assert caught.value.field == "worker_metrics_port"


@pytest.fixture
def read_only_store(store_url: str, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """(a store, the same database opened read-only): SQLite through a read-only URI,
    PostgreSQL with read-only transactions by default, on a schema of the test's own."""
    with scratch_url(store_url, tmp_path) as url, Store.open(url) as writable:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            ro_url = f"sqlite:///file:{parsed.database}?mode=ro&uri=true"
        else:
            options = str(parsed.query.get("options", ""))
            ro_url = parsed.update_query_dict(
                {"options": f"{options} -cdefault_transaction_read_only=on"}
            ).render_as_string(hide_password=False)
        with Store.open(ro_url, migrate_schema=False, deferred_log=False) as read_only:
            yield writable, read_only


def test_readiness_says_a_store_that_cannot_be_written_is_not_ready(
        read_only_store: tuple[Store, Store], settings: Settings) -> None:
    writable, read_only = read_only_store
    consumer = Consumer(settings, "lt.work.nowhere", lambda d: None, name="worker:nowhere")

    async def readyz(store: Store, consumers: list[Consumer]) -> httpx.Response:
        async with serving(WorkerHealth(consumers, store), "127.0.0.1", 0) as port, \
                httpx.AsyncClient() as http:
            return await http.get(f"http://127.0.0.1:{port}/readyz")

    answer = asyncio.run(readyz(read_only, []))
    assert answer.status_code == 503
    checks = answer.json()["checks"]
    assert checks["store"].startswith("not writable: "), checks
    assert checks["broker"] == "ok"

    # A consumer not registered with the broker (not started) is not ready either.
    answer = asyncio.run(readyz(writable, [consumer]))
    assert answer.status_code == 503
    assert answer.json()["checks"] == {"store": "ok",
                                       "broker": "not connected: worker:nowhere"}


def test_the_worker_runs_on_uvloop_unless_the_settings_say_asyncio(tmp_path: Path) -> None:
    import uvloop

    from hub.cli.worker import _event_loop

    assert _event_loop(Settings(data_dir=tmp_path)) is uvloop.new_event_loop
    assert _event_loop(Settings(data_dir=tmp_path, worker_event_loop="asyncio")) is None
