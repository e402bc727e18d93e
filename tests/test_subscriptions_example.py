"""The ministry's example consumer (examples/ministry_consumer.py: pika and joserfc only), run
as its own process with the ministry's credentials against the hub: `lienthong subscriptions
serve` feeding the queue, a replay sending the same events again, a tampered copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pika
import pytest
from subscriptions_support import BHXH, H56, Hub, dossier, drop_users, make_hub, publish

from hub.settings import PROJECT_ROOT, Settings
from hub.simulation import free_port
from hub.store import Store
from hub.subscriptions import service
from hub.subscriptions.fanout import hub_signer
from hub.subscriptions.replay import replay
from hub.testing.broker import depth
from hub.testing.waiting import wait_for

EXAMPLE = PROJECT_ROOT / "examples" / "ministry_consumer.py"


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    made = make_hub(settings, fanout_metrics_port=free_port())
    try:
        yield made
    finally:
        drop_users(made.settings)


def test_the_example_consumer_verifies_what_the_hub_sends(hub: Hub) -> None:
    s = hub.settings
    sn = service.names_of(s)
    with Store.open(s.store_url) as store:
        sub, _ = service.add(s, store, "bhxh", BHXH, ["vn.gov.dossier.submitted"], [H56], [])
        creds = service.credentials(s, store, BHXH)
    env = {**os.environ, "LIENTHONG_DATA_DIR": str(s.data_dir), "LIENTHONG_AMQP_URL": s.amqp_url,
           "LIENTHONG_NAME_PREFIX": s.name_prefix,
           "LIENTHONG_FANOUT_METRICS_PORT": str(s.fanout_metrics_port),
           "LIENTHONG_SUBSCRIPTION_STATUS_INTERVAL": "0.5"}
    fanout = subprocess.Popen(
        [sys.executable, "-c", "from hub.cli import main; main()", "subscriptions", "serve"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        metrics = f"http://127.0.0.1:{s.fanout_metrics_port}/metrics"

        def scraped() -> str:
            if fanout.poll() is not None:
                raise AssertionError(fanout.stdout.read().decode() if fanout.stdout else "")
            try:
                return httpx.get(metrics).text
            except httpx.HTTPError:
                return ""

        wait_for(scraped, timeout=30, message="lienthong subscriptions serve")
        sent = [dossier(i) for i in range(1, 4)]
        publish(hub, sent)
        wait_for(lambda: depth(s.amqp_url, sn.queue("bhxh")) == 3, timeout=20,
                 message="the fan-out's copies")
        gauge = f'lienthong_subscription_messages{{ministry="{BHXH}",subscription="bhxh"}} 3.0'
        # The gauges are the fan-out's last look at the queues (subscription_status_interval).
        wait_for(lambda: gauge in scraped(), timeout=20, message="the depth in the metrics")
    finally:
        fanout.terminate()
        assert fanout.wait(30) == 0
    # The same events again (a replay), then a copy whose body was altered after signing.
    assert replay(s, [sub], hub_signer(s), offset=0).copied == {"bhxh": 3}
    conn = pika.BlockingConnection(pika.URLParameters(s.amqp_url))
    ch = conn.channel()
    method, props, body = ch.basic_get(sn.queue("bhxh"))
    assert method is not None
    ch.basic_nack(method.delivery_tag, requeue=True)
    ch.confirm_delivery()
    ch.basic_publish("", sn.queue("bhxh"), body.replace(b'"2.002492"', b'"2.000001"'), props)
    conn.close()
    cert = s.data_dir / "hub.pem"
    cert.write_bytes(hub.hub_material.certificate_pem())
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), "--url", creds.amqp_url, "--queue", sn.queue("bhxh"),
         "--hub-cert", str(cert), "--count", "7"],
        capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    handled = [x for x in lines if "handled" in x]
    assert sorted(x["handled"] for x in handled) == sorted(e.id for e in sent)
    assert sorted(x["duplicate"] for x in lines if "duplicate" in x) == sorted(e.id for e in sent)
    [rejected] = [x for x in lines if "rejected" in x]
    assert "bad signature" in rejected["why"]
    # What it received is projected: the identity number only, of the applicant.
    assert all(x["data"]["applicant"] == {"identity_number": "001090012345"} for x in handled)
    assert all(len(x["sequence"] or "0" * 19) == 19 for x in handled)
    assert depth(s.amqp_url, sn.queue("bhxh")) == 0
    assert depth(s.amqp_url, sn.dead("bhxh")) == 1  # the rejected copy, for the operators
