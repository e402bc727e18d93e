"""One source of truth for ordering: the workers ``hub.runtime.build_workers`` makes take their
ordering, concurrency and partitions from the resolved topology (the adapter's destination with
the topology file over it), as ``lienthong topology apply`` declares the queues, never from the
adapter's spec alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub import runtime
from hub.adapters import AdapterContext, AdapterSpec, Event, Handler
from hub.broker.names import Names
from hub.broker.topology import Topology
from hub.envelope import Envelope
from hub.errors import ConfigError
from hub.settings import Settings
from hub.signing import load_signer
from hub.store import Store
from hub.testing.keys import hub_keys


def _spec(name: str, *, ordered: bool) -> AdapterSpec:
    def make_handler(ctx: AdapterContext) -> Handler:
        async def handle(event: Event) -> list[Envelope]:
            return []

        return handle

    return AdapterSpec(name=name, description=name, bindings=[f"{name}.#"],
                       make_handler=make_handler, ordered=ordered)


@pytest.fixture
def build(tmp_path: Path) -> Iterator[Any]:
    settings = Settings(data_dir=tmp_path, name_prefix="lttopo")
    hub_keys(settings)
    signer = load_signer(settings.keys_dir, settings.hub_id)
    store = Store.open(f"sqlite:///{tmp_path / 'hub.db'}")
    specs = {"portal": _spec("portal", ordered=True), "feed": _spec("feed", ordered=False)}

    def make(toml: str, **kw: Any) -> dict[str, Any]:
        path = tmp_path / "topology.toml"
        path.write_text(toml)
        local = settings.model_copy(update={"topology_file": path})
        workers = runtime.build_workers(local, None, store=store, signer=signer,
                                        adapters=specs, recorder=False, **kw)
        # The queues the same configuration declares.
        declared = {q.name for q in Topology.from_settings(local, specs).queues}
        assert all(set(w.consumer.queues) <= declared for w in workers)
        return {w.spec.name: w.consumer for w in workers}

    yield make
    store.close()


def test_the_topology_file_decides_ordering_and_concurrency(build: Any) -> None:
    n = Names("lttopo")
    plain = build("")
    assert (plain["portal"].ordered, plain["feed"].ordered) == (True, False)
    assert plain["portal"].concurrency == Settings().worker_concurrency
    # The file makes the ordered adapter unordered and the other ordered: the workers follow.
    turned = build("[destinations.portal]\nordered = false\nconcurrency = 7\n"
                   "[destinations.feed]\nordered = true\n")
    assert (turned["portal"].ordered, turned["feed"].ordered) == (False, True)
    assert turned["portal"].concurrency == 7
    assert turned["portal"].queues == [n.work("portal")]
    # Left out by the file: no worker (its queue is not declared either).
    assert "feed" not in build("[destinations.feed]\nenabled = false\n")


def test_partitions_come_from_the_topology_and_each_process_has_its_home(build: Any) -> None:
    n = Names("lttopo")
    toml = "[destinations.portal]\npartitions = 4\nconcurrency = 32\n"
    alone = build(toml)["portal"]
    assert alone.queues == [n.partition("portal", i) for i in range(4)] == alone.home
    assert (alone.ordered, alone.concurrency, alone.prefetch) == (True, 32, 500)
    second = build(toml, process=(1, 2))["portal"]
    assert second.home == [n.partition("portal", 1), n.partition("portal", 3)]
    assert second.destination == "portal"
    with pytest.raises(ConfigError, match="partitions = 2 but is not ordered"):
        build("[destinations.feed]\npartitions = 2\n")  # unordered: no partitions
