"""The console's commands on a real store and RabbitMQ: operators added, listed, disabled and
reset (argon2 hashes, never the password), dead letters listed, shown, replayed in bulk with a
progress bar and discarded, each action audited with the operator's name."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from test_console_api import PASSWORD, dossier_env, parked_row
from typer.testing import CliRunner

from hub.broker import declare
from hub.broker.destinations import discover_destinations
from hub.broker.names import slot_of
from hub.broker.topology import Topology
from hub.cli import app as cli
from hub.settings import Settings
from hub.signing import Signer, generate
from hub.store import Store
from hub.store.tables import operators
from hub.testing.broker import delete_queues, read_all
from hub.testing.store import scratch_url


@pytest.fixture
def scratch(store_url: str, tmp_path: Path) -> Iterator[str]:
    with scratch_url(store_url, tmp_path) as url:
        yield url


@pytest.fixture
def env(settings: Settings, scratch: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    installed, _ = discover_destinations()
    topology = Topology.from_settings(settings, installed)
    declare.apply(topology, settings.broker_urls)
    try:
        yield {"LIENTHONG_DATA_DIR": str(tmp_path), "LIENTHONG_STORE_URL": scratch,
               "LIENTHONG_AMQP_URL": settings.amqp_url,
               "LIENTHONG_NAME_PREFIX": settings.name_prefix,
               "LIENTHONG_OPERATOR_PASSWORD": PASSWORD}
    finally:
        delete_queues(settings.amqp_url, [q.name for q in topology.queues])


def run(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_operators_add_list_disable_reset(env: dict[str, str], scratch: str) -> None:
    run(env, "operators", "add", "ana", "--role", "operator")
    short = CliRunner().invoke(cli, ["operators", "add", "bob", "--password", "short"], env=env)
    assert short.exit_code == 2 and "at least 12" in short.output
    assert "ana\toperator\tenabled" in run(env, "operators", "list")
    with Store.open(scratch) as store, store.engine.connect() as conn:
        stored = conn.execute(select(operators.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    run(env, "operators", "disable", "ana")
    assert "ana\toperator\tdisabled" in run(env, "operators", "list")
    refused = CliRunner().invoke(cli, ["console", "list", "-u", "ana"], env=env)
    assert refused.exit_code == 2 and "client.unauthenticated" in refused.output
    run(env, "operators", "reset", "ana", "--role", "admin")
    assert "ana\tadmin\tenabled" in run(env, "operators", "list")


def test_list_show_bulk_replay_with_progress_and_discard(
        env: dict[str, str], settings: Settings, scratch: str) -> None:
    run(env, "operators", "add", "ana", "--role", "operator")
    sender = generate("VN:GOV:000.00.00.H56:igate")
    assert sender.certificate is not None
    signer = Signer(sender.private_key, sender.certificate)
    envs = [dossier_env(i) for i in (41, 42, 43)]
    with Store.open(scratch) as store, store.begin() as tx:
        ids = [tx.dead_letter_add(**parked_row(settings, e, signer, code="system.rejected",
                                               reason="no")) for e in envs]
    listed = json.loads(run(env, "console", "list", "-u", "ana", "--json"))
    assert listed["total"] == 3 and listed["counts"] == {"refused": 3}
    shown = json.loads(run(env, "console", "show", str(ids[0]), "-u", "ana"))
    assert shown["envelope"]["id"] == envs[0].id
    out = run(env, "console", "replay", str(ids[0]), str(ids[1]), "-u", "ana",
              "--why", "portal is back")
    assert "replayed 2 of 2" in out and "replaying" in out  # the progress bar's label
    topology = Topology.from_settings(settings, discover_destinations()[0])
    queues = topology.work_queues("npsp")
    got = {r.message_id for q in {queues[slot_of(e.subject) % len(queues)] for e in envs[:2]}
           for r in read_all(settings.amqp_url, q)}
    assert got == {envs[0].id, envs[1].id}
    run(env, "console", "discard", str(ids[2]), "-u", "ana", "--why", "sent twice upstream")
    assert json.loads(run(env, "console", "list", "-u", "ana", "--json"))["total"] == 0
    trail = [json.loads(line) for line in run(env, "audit", "export").splitlines()]
    assert [(e["action"], e["actor"]) for e in trail] == [
        ("replay", "ana"), ("replay", "ana"), ("discard", "ana")]
