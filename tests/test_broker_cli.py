"""``lienthong topology apply|show`` against the real broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.adapters import AdapterSpec
from hub.cli import app
from hub.testing.broker import delete_queues, topology_queues

runner = CliRunner()

TOPOLOGY = """
[destinations.ministry]
bindings = ["dossier.*.*.2_002492"]
ordered = false
description = "one ministry's subscription"
"""


class EntryPoint:
    def __init__(self, name: str, target: object) -> None:
        self.name, self.value, self._target = name, f"adapters.{name}:adapter", target

    def load(self) -> object:
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


@pytest.fixture(autouse=True)
def _leave_the_broker_light(amqp_url: str, prefix: str) -> Iterator[None]:
    yield
    delete_queues(amqp_url, topology_queues(prefix, ["portal", "ministry"], 2))


@pytest.fixture
def env(amqp_url: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> dict[str, str]:
    path = tmp_path / "topology.toml"
    path.write_text(TOPOLOGY)
    portal = AdapterSpec(
        name="portal", description="a portal", bindings=["dossier.submitted.#"],
        make_handler=lambda ctx: None,  # type: ignore[arg-type,return-value]
    )
    broken = EntryPoint("broken", ModuleNotFoundError("No module named 'zeep2'"))
    monkeypatch.setattr(
        "hub.broker.destinations.entry_points",
        lambda group: [EntryPoint("portal", portal), broken],
    )
    return {
        "LIENTHONG_AMQP_URL": amqp_url,
        "LIENTHONG_NAME_PREFIX": prefix,
        "LIENTHONG_TOPOLOGY_FILE": str(path),
        "LIENTHONG_DATA_DIR": str(tmp_path),
        "LIENTHONG_RETRY_TIERS": "[1, 2]",
    }


def test_apply_declares_then_finds_everything_in_place(env: dict[str, str], prefix: str) -> None:
    first = runner.invoke(app, ["topology", "apply"], env=env)
    assert first.exit_code == 0, first.output
    assert f"created  queue    {prefix}.work.portal" in first.output
    assert f"created  queue    {prefix}.work.ministry" in first.output
    assert f"created  queue    {prefix}.retry.1" in first.output
    assert "'broken'" in first.output and "zeep2" in first.output  # named, not fatal
    assert "2 destinations" in first.output
    second = runner.invoke(app, ["topology", "apply"], env=env)
    assert second.exit_code == 0, second.output
    assert "created " not in second.output
    assert "0 declarations created" in second.output


def test_apply_reports_a_conflict_and_fails(env: dict[str, str], prefix: str) -> None:
    assert runner.invoke(app, ["topology", "apply"], env=env).exit_code == 0
    changed = {**env, "LIENTHONG_RETRY_TIERS": "[1, 3]"}
    result = runner.invoke(app, ["topology", "apply"], env=changed)
    assert result.exit_code == 1
    assert f"queue '{prefix}.retry.1'" in result.output
    assert "x-message-ttl" in result.output and "'2000'" in result.output
    assert "delete_queue" in result.output


def test_show_prints_the_intended_topology_and_live_depths(
    env: dict[str, str], prefix: str
) -> None:
    before = runner.invoke(app, ["topology", "show", "--live"], env=env)
    assert before.exit_code == 0, before.output
    assert "ministry  (unordered, from topology.toml)" in before.output
    assert f"{prefix}.events  (topic)  alternate-exchange={prefix}.unroutable" in before.output
    assert f"{prefix}.work.portal" in before.output and "absent" in before.output
    runner.invoke(app, ["topology", "apply"], env=env)
    after = runner.invoke(app, ["topology", "show", "--live"], env=env)
    assert "absent" not in after.output
    assert "0 ready" in after.output


def test_no_adapters_uses_the_file_alone(env: dict[str, str], prefix: str) -> None:
    result = runner.invoke(app, ["topology", "show", "--no-adapters"], env=env)
    assert result.exit_code == 0, result.output
    assert "ministry" in result.output and f"{prefix}.work.portal" not in result.output
