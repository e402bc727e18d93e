"""The console in a real headless browser (Debian's chromium driven by Playwright, no browser
download), through the real doors: `lienthong serve` and `lienthong worker npsp` (with its
dead-letter keeper) as processes on one store and RabbitMQ, the portal simulator beside them.
Two dossiers fail at the portal until their retries are exhausted and are kept as dead
letters; an operator signs in, filters, inspects one, edits and resubmits it, replays the
other, sees both leave the list and the portal receive them, and finds both actions in the
audit trail. Screenshots of the main pages are taken each run (they prove the pages render)
into the test's directory, or into LIENTHONG_SCREENSHOTS when set (`LIENTHONG_SCREENSHOTS=
docs/console` refreshes the documentation's)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from npsp_support import sample_dossier

from adapters.npsp.simulator import NpspSimulator
from hub.broker import declare
from hub.broker.messages import Outgoing
from hub.broker.publisher import Publisher
from hub.broker.topology import Topology
from hub.console.accounts import Accounts
from hub.envelope import Envelope
from hub.settings import Settings
from hub.signing import Signer, TrustStore, generate
from hub.simulation import free_port
from hub.store import Store
from hub.testing.broker import delete_queues
from hub.testing.processes import serving
from hub.testing.waiting import wait_for

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is missing (scripts/bootstrap.sh)")
PROVINCE = "VN:GOV:000.00.00.H56:igate"
EDITED, REPLAYED = "000.00.00.H56-250101-0101", "000.00.00.H56-250101-0102"
PASSWORD = "correct horse battery"


def lienthong(*args: str) -> list[str]:
    return [sys.executable, "-c", "from hub.cli import main; main()", *args]


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where the screenshots go: LIENTHONG_SCREENSHOTS (relative to the checkout) or the
    test's own directory, so that a run leaves the checkout as it was."""
    wanted = os.environ.get("LIENTHONG_SCREENSHOTS")
    where = (Path(__file__).resolve().parent.parent / wanted) if wanted else tmp_path / "shots"
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture
def pipeline(settings: Settings, tmp_path: Path) -> Iterator[dict[str, Any]]:
    # The worker and the console read one topology, the shipped one: the portal's partitions.
    topology = Topology.from_settings(settings)
    declare.apply(topology, settings.broker_urls)
    hub_keys = generate(settings.hub_id)
    hub_keys.save(settings.keys_dir)
    province = generate(PROVINCE)
    trust = TrustStore(settings.trust_dir)
    trust.add(hub_keys.certificate_pem())
    trust.add(province.certificate_pem())
    assert province.certificate is not None
    store_url = f"sqlite:///{tmp_path / 'hub.db'}"
    store = Store.open(store_url)
    Accounts(store).add("ana", PASSWORD, "operator")

    with NpspSimulator() as sim:
        overlay = settings.data_dir / "adapters"
        overlay.mkdir(parents=True, exist_ok=True)
        (overlay / "npsp.toml").write_text(
            f'base_url = "{sim.base_url}"\n\n[policy]\ntimeout = 5.0\nattempts = 1\n'
            "breaker_failures = 100\n", encoding="utf-8")
        env = {
            **os.environ,
            "LIENTHONG_DATA_DIR": str(settings.data_dir),
            "LIENTHONG_AMQP_URL": settings.amqp_url,
            "LIENTHONG_NAME_PREFIX": settings.name_prefix,
            "LIENTHONG_STORE_URL": store_url,
            "LIENTHONG_RETRY_TIERS": json.dumps(settings.retry_tiers),
            "NPSP_USERNAME": "hub", "NPSP_PASSWORD": "secret",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        port, worker_port = free_port(), free_port()
        try:
            # The worker answers /readyz on its metrics port once it consumes.
            with serving(lienthong("serve", "--port", str(port), "--log-level", "warning"),
                         port, timeout=60, env=env) as base, \
                    serving(lienthong("worker", "npsp"), worker_port, timeout=60,
                            env={**env, "LIENTHONG_WORKER_METRICS_PORT": str(worker_port)}):
                yield {"settings": settings, "topology": topology, "sim": sim, "store": store,
                       "base": base,
                       "signer": Signer(province.private_key, province.certificate)}
        finally:
            store.close()
            delete_queues(settings.amqp_url, [q.name for q in topology.queues])


def test_an_operator_fixes_two_dead_letters_in_the_browser(pipeline: dict[str, Any],
                                                          shots: Path) -> None:
    settings, sim, store = pipeline["settings"], pipeline["sim"], pipeline["store"]
    tiers = len(settings.retry_tiers)
    for code in (EDITED, REPLAYED):
        sim.fail_dossier(code, count=tiers + 1)  # every attempt fails, then the portal is back

    async def send() -> None:
        async with Publisher(settings.broker_urls, settings) as pub:
            for code in (EDITED, REPLAYED):
                env = Envelope.new(source=PROVINCE, type="vn.gov.dossier.submitted",
                                   subject=code, agency="000.00.00.H56", procedure="2.002492",
                                   data=sample_dossier(code).model_dump(mode="json"), sequence=1)
                await pub.publish(Outgoing.signed(env, pipeline["signer"],
                                                  pipeline["topology"].names.events))

    asyncio.run(send())
    # Kept by the worker's keeper, once every retry failed.
    wait_for(lambda: len(store.dead_letters(limit=10)) == 2, timeout=60,
             message="two dead letters")
    assert sim.dossier(EDITED) is None and sim.dossier(REPLAYED) is None
    ids = {d.dossier_code: d.id for d in store.dead_letters(limit=10)}
    base = pipeline["base"]

    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        outside: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(base) else outside.append(r.url))
        page.goto(f"{base}/console/login?lang=en")
        page.screenshot(path=str(shots / "login.png"))
        page.fill("input[name=username]", "ana")
        page.fill("input[name=password]", PASSWORD)
        page.click("#sign-in")
        # Nothing wrong: the worker's keeper runs, its circuit is closed, certificates fresh.
        assert page.locator("#warnings-none").count() == 1
        page.select_option("select[name=kind]", "retries exhausted")
        page.click("#apply-filter")
        assert page.inner_text("#total") == "2"
        page.screenshot(path=str(shots / "dead-letters.png"), full_page=True)

        page.click(f'a.inspect[href="/console/dead-letters/{ids[EDITED]}"]')
        assert "valid: signed by " + PROVINCE in page.inner_text("#signature")
        assert "system" in page.inner_text("#history")
        page.screenshot(path=str(shots / "dead-letter.png"), full_page=True)
        data = json.loads(page.input_value("#data"))
        data["note"] = "checked by the operator"
        page.fill("#data", json.dumps(data, ensure_ascii=False))
        page.fill("#edit-form input[name=why]", "portal rejected it; note added")
        page.click("#edit")
        assert "re-signed by the hub" in page.inner_text("#flash")

        page.goto(f"{base}/console/dead-letters/{ids[REPLAYED]}")
        page.fill("#replay-form input[name=why]", "the portal is back")
        page.click("#replay")
        assert "replayed to npsp" in page.inner_text("#flash")
        assert page.locator("#empty").count() == 1  # both left the list

        wait_for(lambda: sim.dossier(EDITED) is not None and sim.dossier(REPLAYED) is not None,
                 timeout=30, message="the portal receives both")

        page.goto(f"{base}/console/audit")
        rows = page.inner_text("#audit")
        assert f"dead-letter:{ids[EDITED]}" in rows and f"dead-letter:{ids[REPLAYED]}" in rows
        assert "edit" in rows and "replay" in rows and "ana" in rows
        assert "intact" in page.inner_text("#chain")
        page.screenshot(path=str(shots / "audit.png"), full_page=True)
        page.goto(f"{base}/console?lang=vi")
        page.screenshot(path=str(shots / "dead-letters-vi.png"), full_page=True)
        browser.close()
    assert outside == []  # nothing fetched beyond the hub
    # Nothing came back as a new dead letter: both delivered.
    assert len(store.dead_letters(limit=10)) == 2
