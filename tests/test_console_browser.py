"""The console in a real headless browser (Debian's chromium driven by Playwright, no browser
download): the hub's app served on a socket, a real npsp worker with the portal simulator and
the dead-letter keeper on RabbitMQ. Two dossiers fail at the portal until their retries are
exhausted and are kept as dead letters; an operator signs in, filters, inspects one, edits
and resubmits it, replays the other, sees both leave the list and the portal receive them, and
finds both actions in the audit trail. Screenshots of the main pages go to docs/console/."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from npsp_support import sample_dossier
from test_api_support import clients_config

from adapters.npsp import adapter
from adapters.npsp.simulator import NpspSimulator
from hub.api.app import create_app
from hub.api.auth import ClientRegistry
from hub.broker import declare
from hub.broker.consumer import Consumer
from hub.broker.messages import Outgoing
from hub.broker.publisher import Publisher
from hub.broker.topology import Topology
from hub.console.accounts import Accounts
from hub.console.keeper import Keeper
from hub.envelope import Envelope
from hub.runtime import queue_verifier
from hub.settings import PROJECT_ROOT, Settings
from hub.signing import Signer, TrustStore, generate, load_signer
from hub.simulation import SimulatorServer
from hub.store import Store
from hub.testing.broker import LoopThread, delete_queues
from hub.testing.waiting import eventually, wait_for

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is missing (scripts/bootstrap.sh)")
PROVINCE = "VN:GOV:000.00.00.H56:igate"
EDITED, REPLAYED = "000.00.00.H56-250101-0101", "000.00.00.H56-250101-0102"
PASSWORD = "correct horse battery"
SHOTS = PROJECT_ROOT / "docs" / "console"


@pytest.fixture
def pipeline(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("NPSP_USERNAME", "hub")
    monkeypatch.setenv("NPSP_PASSWORD", "secret")
    empty = tmp_path / "topology.toml"
    empty.write_text("")
    # The worker and the console read one topology: the portal's plain work queue.
    settings = settings.model_copy(update={"topology_file": empty})
    topology = Topology.from_settings(settings, [adapter])
    declare.apply(topology, settings.broker_urls)
    hub_keys = generate(settings.hub_id)
    hub_keys.save(settings.keys_dir)
    province = generate(PROVINCE)
    trust = TrustStore(settings.trust_dir)
    trust.add(hub_keys.certificate_pem())
    trust.add(province.certificate_pem())
    assert province.certificate is not None
    store = Store.open(f"sqlite:///{tmp_path / 'hub.db'}")
    Accounts(store).add("ana", PASSWORD, "operator")
    loop = LoopThread()
    from hub.adapters import AdapterContext, load_config

    with NpspSimulator() as sim:
        config = load_config(PROJECT_ROOT / "mappings", "npsp")
        config["base_url"] = sim.base_url
        config["policy"] = {"timeout": 2.0, "attempts": 1, "breaker_failures": 100}
        ctx = AdapterContext(settings=settings, config=config, store=store,
                             events_exchange=topology.names.events)

        async def start() -> tuple[Consumer, Keeper, Any]:
            handler = adapter.make_handler(ctx)
            consumer = Consumer(settings, topology.work_queue("npsp"), handler,
                                verifier=queue_verifier(settings), ordered=True,
                                name="worker:npsp", store=store, processed=store.processed)
            keeper = Keeper(settings, store)
            consumer.start()
            keeper.start()
            await consumer.wait_consuming()
            await keeper.wait_consuming()
            return consumer, keeper, handler

        consumer, keeper, handler = loop.run(start())
        app = create_app(settings, store=store, registry=ClientRegistry.from_dict(
            clients_config()), relay=False, adapters={},
            signer=load_signer(settings.keys_dir, settings.hub_id, relay=True))
        server = SimulatorServer(app, lifespan="on")
        server.start()
        try:
            yield {"settings": settings, "topology": topology, "sim": sim, "store": store,
                   "consumer": consumer, "keeper": keeper, "loop": loop, "base": server.base_url,
                   "signer": Signer(province.private_key, province.certificate)}
        finally:
            server.stop()

            async def stop() -> None:
                await consumer.stop()
                await keeper.stop()
                await handler.aclose()

            loop.run(stop())
            loop.close()
            store.close()
            delete_queues(settings.amqp_url, [q.name for q in topology.queues])


def test_an_operator_fixes_two_dead_letters_in_the_browser(pipeline: dict[str, Any]) -> None:
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
        await eventually(lambda: pipeline["keeper"].state.kept == 2, 30, "two dead letters")

    pipeline["loop"].run(send())
    assert sim.dossier(EDITED) is None and sim.dossier(REPLAYED) is None
    ids = {d.dossier_code: d.id for d in store.dead_letters(limit=10)}
    base = pipeline["base"]
    SHOTS.mkdir(parents=True, exist_ok=True)

    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        outside: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(base) else outside.append(r.url))
        page.goto(f"{base}/console/login?lang=en")
        page.screenshot(path=str(SHOTS / "login.png"))
        page.fill("input[name=username]", "ana")
        page.fill("input[name=password]", PASSWORD)
        page.click("#sign-in")
        page.select_option("select[name=kind]", "retries exhausted")
        page.click("#apply-filter")
        assert page.inner_text("#total") == "2"
        page.screenshot(path=str(SHOTS / "dead-letters.png"), full_page=True)

        page.click(f'a.inspect[href="/console/dead-letters/{ids[EDITED]}"]')
        assert "valid: signed by " + PROVINCE in page.inner_text("#signature")
        assert "system" in page.inner_text("#history")
        page.screenshot(path=str(SHOTS / "dead-letter.png"), full_page=True)
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
        page.screenshot(path=str(SHOTS / "audit.png"), full_page=True)
        page.goto(f"{base}/console?lang=vi")
        page.screenshot(path=str(SHOTS / "dead-letters-vi.png"), full_page=True)
        browser.close()
    assert outside == []  # nothing fetched beyond the hub
    assert pipeline["keeper"].state.kept == 2  # nothing came back: both delivered
