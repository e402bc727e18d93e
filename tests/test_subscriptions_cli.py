"""`lienthong subscriptions add|show|credentials|remove` and `lienthong topology apply` through
the command line, against real RabbitMQ (the test's vhost, its management API) and a real
store: what an operator types, and what it leaves on the broker."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pika
import pytest
from pika.exceptions import ProbableAuthenticationError
from subscriptions_support import (
    BHXH,
    H56,
    Hub,
    dossier,
    drop_users,
    fanout_running,
    make_hub,
    publish,
)
from typer.testing import CliRunner, Result

from hub.broker.management import Management
from hub.cli import app as cli
from hub.settings import Settings
from hub.store import Store
from hub.subscriptions import service
from hub.testing.broker import depth
from hub.testing.waiting import wait_for


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    made = make_hub(settings)
    try:
        yield made
    finally:
        drop_users(made.settings)


def run(s: Settings, *args: str) -> Result:
    env = {"LIENTHONG_DATA_DIR": str(s.data_dir), "LIENTHONG_AMQP_URL": s.amqp_url,
           "LIENTHONG_NAME_PREFIX": s.name_prefix,
           "LIENTHONG_RETRY_TIERS": json.dumps(s.retry_tiers)}
    return CliRunner().invoke(cli, list(args), env=env)


def password_of(output: str) -> str:
    [line] = [x for x in output.splitlines() if x.startswith("password (shown once")]
    return line.split(": ", 1)[1]


def test_an_operator_adds_shows_reapplies_rotates_and_removes_through_the_command_line(
        hub: Hub) -> None:
    s = hub.settings
    sn = service.names_of(s)
    added = run(s, "subscriptions", "add", "bhxh", "--ministry", BHXH, "--type",
                "vn.gov.dossier.submitted", "--agency", H56)
    assert added.exit_code == 0, added.output
    first = password_of(added.output)
    # A second subscription of the ministry: no new user, no password printed.
    again = run(s, "subscriptions", "add", "bhxh-status", "--ministry", BHXH, "--type",
                "vn.gov.dossier.status-changed")
    assert again.exit_code == 0 and "password" not in again.output, again.output
    shown = run(s, "subscriptions", "show", "bhxh")
    assert shown.exit_code == 0, shown.output
    for part in (BHXH, "vn.gov.dossier.submitted", H56, "identity-only", sn.queue("bhxh"),
                 sn.dead("bhxh"), sn.user(BHXH), "dossier.submitted.000_00_00_H56.*"):
        assert part in shown.output
    assert run(s, "subscriptions", "show", "nobody").exit_code == 1
    # Its user reads both its queues, as granted at each add.
    with Management.from_settings(s) as mgmt:
        perms = mgmt.permissions(sn.user(BHXH))
    assert perms is not None and perms["configure"] == perms["write"] == "^$"
    assert re.fullmatch(perms["read"], sn.queue("bhxh"))
    assert re.fullmatch(perms["read"], sn.queue("bhxh-status"))
    assert not re.fullmatch(perms["read"], sn.queue("hotich"))

    # `lienthong topology apply` makes again what the store holds: a queue deleted by hand
    # comes back; a second run creates nothing.
    conn = pika.BlockingConnection(pika.URLParameters(s.amqp_url))
    conn.channel().queue_delete(sn.queue("bhxh"))
    conn.close()
    # The exchanges and tiers of make_hub (its topology file names no destination).
    apply = ("topology", "apply", "--no-adapters", "--file",
             str(s.data_dir / "topology.toml"))
    applied = run(s, *apply)
    assert applied.exit_code == 0, applied.output
    assert re.search(rf"created +queue +{re.escape(sn.queue('bhxh'))}$", applied.output,
                     re.MULTILINE), applied.output
    assert depth(s.amqp_url, sn.queue("bhxh")) == 0
    reapplied = run(s, *apply)
    assert reapplied.exit_code == 0, reapplied.output
    assert not re.search(r"^created ", reapplied.output, re.MULTILINE), reapplied.output

    # Credentials are shown once: asked again, refused; rotated, the old password is dead.
    refused = run(s, "subscriptions", "credentials", BHXH)
    assert refused.exit_code == 1 and "--rotate" in refused.output
    rotated = run(s, "subscriptions", "credentials", BHXH, "--rotate")
    assert rotated.exit_code == 0, rotated.output
    second = password_of(rotated.output)
    assert second != first
    user = sn.user(BHXH)
    vhost = pika.URLParameters(s.amqp_url).virtual_host
    with pytest.raises(ProbableAuthenticationError):
        pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", credentials=pika.PlainCredentials(user, first), virtual_host=vhost))
    pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", credentials=pika.PlainCredentials(user, second),
        virtual_host=vhost)).close()

    # Removing a queue that holds messages needs --force; the last subscription of the
    # ministry takes its user with it.
    publish(hub, [dossier(1)])
    with Store.open(s.store_url) as store, fanout_running(hub, store):
        wait_for(lambda: depth(s.amqp_url, sn.queue("bhxh")) == 1, message="bhxh's copy")
    kept = run(s, "subscriptions", "remove", "bhxh")
    assert kept.exit_code == 1 and "--force" in kept.output
    assert depth(s.amqp_url, sn.queue("bhxh")) == 1
    assert run(s, "subscriptions", "remove", "bhxh", "--force").exit_code == 0
    assert run(s, "subscriptions", "remove", "bhxh-status").exit_code == 0
    with Management.from_settings(s) as mgmt:
        assert not mgmt.queue(sn.queue("bhxh")).exists
        assert not mgmt.queue(sn.dead("bhxh")).exists
        assert not mgmt.user_exists(user)
    listed = run(s, "subscriptions", "list")
    assert listed.exit_code == 0 and "no subscriptions" in listed.output
