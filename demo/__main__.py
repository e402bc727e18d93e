"""The hub's main job, end to end, on this machine: sample dossiers carried through every system.

Starts a simulator of each external system (provincial one-stop system, National Public Service
Portal, population database, payment gateway, postal service) on local sockets, the hub's HTTP
entry point (REST + SOAP) with its outbox relay, and the adapter workers on a RabbitMQ topology
of its own. Then it plays what a day of a province looks like:

1. the province submits a dossier (signed REST call) → the portal gets it (DongBoHoSoMC);
   a citizen submits one online at the portal → the province gets it;
2. the province asks the population database to verify the applicant;
3. the province reports receipt and processing → the portal follows each status, in order;
4. a fee: payment requested → the gateway gives a payment URL → the citizen pays → the gateway
   calls the hub back (checksum verified) → payment completed;
5. the result goes back by post: an order on a pooled waybill, tracking pushed by the postal
   service;
6. the portal goes down for a while: the status change waits in the retry tiers and arrives when
   the portal is back; a forged message is parked in the invalid-message queue, never retried.

At the end it prints each dossier's timeline, the queue depths and the message log's check.

    ./run-demo            (sets everything up; see README)
    .venv/bin/python -m demo [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import shutil
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pika

from hub.adapters import discover
from hub.broker import declare
from hub.broker.messages import Outgoing
from hub.broker.names import Names
from hub.broker.topology import Topology
from hub.envelope import Envelope
from hub.model import VN_TZ
from hub.settings import Settings
from hub.signing import Signer, TrustStore, generate, load_signer
from hub.simulation import SimulatorServer
from hub.store import Store
from hub.testing.waiting import TimedOut, wait_for

# How long a step of the story may take before the demo gives up on it (a loaded machine is slow,
# a stuck hub never gets there).
PATIENCE = 60.0
PROVINCE = "VN:GOV:000.00.00.H56:igate"  # Thanh Hóa's one-stop system
PORTAL = "VN:GOV:000.00.00.G22:dvcqg"  # the National Public Service Portal, as an upstream
AGENCY = "000.00.00.H56"
TYPES_OF_PROVINCE = [
    "vn.gov.dossier.submitted",
    "vn.gov.dossier.status-changed",
    "vn.gov.dossier.progress-reported",
    "vn.gov.payment.requested",
    "vn.gov.postal.pickup-requested",
    "vn.gov.citizen.verification-requested",
]


def say(text: str) -> None:
    print(text, flush=True)


def step(text: str) -> None:
    say(f"\n== {text}")


# -- setting up --------------------------------------------------------------------------------


def make_keys(settings: Settings) -> dict[str, Signer]:
    trust = TrustStore(settings.trust_dir)
    for system, alg in ((settings.hub_id, "ES256"), (f"{settings.hub_id}-soap", "RS256"),
                        (PROVINCE, "RS256"), (PORTAL, "ES256")):
        material = generate(system, alg)
        material.save(settings.keys_dir)
        trust.add(material.certificate_pem())
    return {s: load_signer(settings.keys_dir, s) for s in (PROVINCE, PORTAL)}


def write_clients(settings: Settings) -> dict[str, str]:
    """The two upstream systems, with fresh API keys; the file keeps only their digests."""
    keys = {PROVINCE: secrets.token_urlsafe(24), PORTAL: secrets.token_urlsafe(24)}
    blocks = [
        ("Thanh Hóa one-stop system", PROVINCE, TYPES_OF_PROVINCE, [f"{AGENCY}*"]),
        ("National Public Service Portal", PORTAL, ["vn.gov.dossier.submitted"], ["*"]),
    ]
    lines = ["[oauth]", "token_ttl_seconds = 300", ""]
    for name, system, types, agencies in blocks:
        digest = hashlib.sha256(keys[system].encode()).hexdigest()
        lines += [
            "[[clients]]",
            f'system_id = "{system}"',
            f'name = "{name}"',
            f"allowed_types = {json.dumps(types)}",
            f"allowed_agencies = {json.dumps(agencies)}",
            f'api_key_sha256 = ["{digest}"]',
            "",
        ]
    settings.clients_file.write_text("\n".join(lines), encoding="utf-8")
    return keys


class Simulators:
    """Every external system, on a local socket, with the overlay that points its adapter at
    it (``<data_dir>/adapters/<name>.toml``)."""

    def __init__(self, settings: Settings, hub_url: str) -> None:
        specs = discover()
        self.overlays = settings.data_dir / "adapters"
        self.overlays.mkdir(parents=True, exist_ok=True)
        # The demo drives each system by its own switches, beyond the Simulator contract.
        make: dict[str, Any] = {name: spec.make_simulator for name, spec in specs.items()}
        self.provincial = make["provincial"]()
        self.npsp = make["npsp"](username=os.environ["NPSP_USERNAME"],
                                 password=os.environ["NPSP_PASSWORD"])
        self.population = make["population"]()
        self.payment = make["payment"](
            secret=os.environ["LIENTHONG_PAYMENT_SECRET"],
            callback_url=f"{hub_url}/v1/callbacks/payment")
        self.postal = make["postal"](webhook_url=f"{hub_url}/v1/callbacks/postal")
        self.all = [self.provincial, self.npsp, self.population, self.payment, self.postal]

    def start(self) -> None:
        for sim in self.all:
            sim.start()
        self._overlay("provincial", f'base_url = "{self.provincial.base_url}"')
        self._overlay("npsp", f'base_url = "{self.npsp.base_url}"')
        self._overlay("population", f'url = "{self.population.url}"\nurl_env = ""')
        self._overlay("payment", f'base_url = "{self.payment.base_url}"')
        # Waybills the postal service pre-allocated to the hub (S10 numbers with check digit).
        self._overlay("postal", f'base_url = "{self.postal.base_url}"\n\n[[pool.ranges]]\n'
                                'first = "EB000000014VN"\nlast = "EB000000990VN"')

    def _overlay(self, name: str, text: str) -> None:
        (self.overlays / f"{name}.toml").write_text(text + "\n", encoding="utf-8")

    def stop(self) -> None:
        for sim in self.all:
            sim.stop()


class Workers:
    """The adapter workers and the timeline recorder, on an event loop in a thread."""

    def __init__(self, settings: Settings, store: Store) -> None:
        from hub import runtime

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="workers", daemon=True)
        self.workers = runtime.build_workers(settings, None, store=store)

    def start(self) -> None:
        self.thread.start()

        async def go() -> None:
            for w in self.workers:
                w.consumer.start()
            for w in self.workers:
                await w.consumer.wait_consuming()

        asyncio.run_coroutine_threadsafe(go(), self.loop).result(60)

    def stop(self) -> None:
        async def go() -> None:
            await asyncio.gather(*(w.stop() for w in self.workers))

        asyncio.run_coroutine_threadsafe(go(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Upstream:
    """An upstream system calling the hub's REST entry point: API key, and a detached JWS over
    each body made with its own key."""

    def __init__(self, hub_url: str, api_key: str, signer: Signer) -> None:
        self.http = httpx.Client(base_url=hub_url, timeout=10.0)
        self.api_key = api_key
        self.signer = signer

    def post(self, path: str, event_type: str, data: dict[str, Any]) -> str:
        body = json.dumps(data, ensure_ascii=False, default=str).encode()
        request = Envelope(id=str(uuid.uuid4()), source=self.signer.system_id, type=event_type,
                           subject="-", time=datetime.now(UTC), data=None)
        answer = self.http.post(path, content=body, headers={
            "Content-Type": "application/json",
            "X-API-Key": self.api_key,
            "X-Signature": self.signer.sign(body, request),
            "Idempotency-Key": request.id,
        })
        if answer.status_code != 202:
            raise SystemExit(f"demo: {path} refused: {answer.status_code} {answer.text}")
        message_id: str = answer.json()["message_id"]
        return message_id

    def timeline(self, code: str) -> list[dict[str, Any]]:
        answer = self.http.get(f"/v1/dossiers/{code}/timeline",
                               headers={"X-API-Key": self.api_key})
        answer.raise_for_status()
        entries: list[dict[str, Any]] = answer.json()["entries"]
        return entries


# -- the story ---------------------------------------------------------------------------------


def soap_progress(settings: Settings, province: Upstream, code: str) -> None:
    """A progress step over SOAP 1.2 with zeep, the request signed with XML-DSig by the
    province's RSA key and the hub's signed answer checked against the hub's certificate."""
    import requests
    import zeep
    from cryptography.hazmat.primitives.asymmetric import rsa

    from hub.signing.keys import KeyFiles, load_certificate, load_private_key
    from hub.testing.soap import SigningPlugin

    mine = KeyFiles.of(settings.keys_dir, PROVINCE)
    hub = KeyFiles.of(settings.keys_dir, f"{settings.hub_id}-soap")
    session = requests.Session()
    session.headers["X-API-Key"] = province.api_key
    key = load_private_key(mine.key)
    assert isinstance(key, rsa.RSAPrivateKey)  # XML-DSig here is RSA-SHA256
    client = zeep.Client(  # type: ignore[no-untyped-call]
        f"{province.http.base_url}/soap/v1?wsdl",
        transport=zeep.Transport(session=session),  # type: ignore[no-untyped-call]
        plugins=[SigningPlugin(key, load_certificate(mine.certificate),
                               hub_certificate=load_certificate(hub.certificate))],
    )
    step = {
        "dossierCode": code, "officer": "Lê Thị Bình", "officerTitle": "Chuyên viên",
        "department": "Phòng Quản lý đô thị", "content": "Thẩm định hồ sơ", "status": 4,
        "at": datetime.now(VN_TZ).replace(tzinfo=None, microsecond=0).isoformat()}
    # createdAt is the signing time, inside the signed element: the hub refuses the request
    # once it is older than its age window, so a captured copy cannot be replayed later.
    answer = client.bind("IntakeService", "IntakeSoap12").ReportProgress(
        createdAt=datetime.now(VN_TZ), progress=step)
    say(f"   SOAP 1.2 ReportProgress accepted: message {answer.messageId} "
        "(the hub's signed answer verified)")


def dossier(code: str, channel: int, **extra: Any) -> dict[str, Any]:
    now = datetime.now(VN_TZ).replace(microsecond=0)
    return {
        "code": code,
        "procedure_code": "2.002492",
        "procedure_name": "Cấp giấy phép xây dựng nhà ở riêng lẻ",
        "field_code": "G14",
        "agency_code": AGENCY,
        "applicant": {"identity_number": "001090012345", "name": "Nguyễn Văn An",
                      "birth_date": "1990-01-15", "address": "Số 1 phố Thử Nghiệm",
                      "phone": "0912345678"},
        "channel": channel,
        "status": 1,
        "submitted_at": now.isoformat(),
        "due_at": (now + timedelta(days=15)).isoformat(),
        "attachments": [{"id": "f-1", "name": "don-de-nghi.pdf",
                         "url": "https://files.example.gov.vn/h56/don-de-nghi.pdf",
                         "size": 182_344, "sha256": hashlib.sha256(code.encode()).hexdigest()}],
        "fees": [{"code": "LP-XD", "name": "Lệ phí cấp giấy phép xây dựng", "amount": "75000",
                  "kind": 2}],
        **extra,
    }


def status(code: str, value: int, note: str) -> dict[str, Any]:
    return {"dossier_code": code, "status": value, "at": datetime.now(VN_TZ).isoformat(),
            "officer": "Lê Thị Bình", "note": note}


def has(entries: list[dict[str, Any]], event_type: str, **summary: Any) -> bool:
    return any(e["event_type"] == event_type
               and all(e["summary"].get(k) == v for k, v in summary.items()) for e in entries)


def play(settings: Settings, sims: Simulators, province: Upstream, portal: Upstream) -> list[str]:
    day = datetime.now(VN_TZ).strftime("%y%m%d")
    counter = secrets.randbelow(8000) + 1000
    first, second = f"{AGENCY}-{day}-{counter:04d}", f"{AGENCY}-{day}-{counter + 1:04d}"

    step(f"1. the province submits {first}; a citizen submits {second} online at the portal")
    province.post("/v1/dossiers", "vn.gov.dossier.submitted", dossier(first, channel=1))
    portal.post("/v1/dossiers", "vn.gov.dossier.submitted", dossier(second, channel=2))
    wait_for(lambda: sims.npsp.dossier(first), PATIENCE, "the portal to have the first dossier")
    say(f"   portal (DongBoHoSoMC) has {first}: status "
        f"{sims.npsp.dossier(first)['TrangThaiHoSo']}")
    wait_for(lambda: sims.provincial.dossier(second), PATIENCE,
             "the province to receive the online dossier")
    say(f"   province received {second} from the portal")

    step("2. the province asks the population database to verify the applicant")
    province.post("/v1/citizens/verifications", "vn.gov.citizen.verification-requested",
                  {"dossier_code": first, "identity_number": "001090012345",
                   "name": "Nguyễn Văn An", "birth_date": "1990-01-15"})
    wait_for(lambda: has(province.timeline(first), "vn.gov.citizen.verified", matched=True),
             PATIENCE, "the verification answer")
    say("   population database: the applicant exists with these details (matched)")

    step("3. the province receives and processes the dossier; the portal follows")
    province.post(f"/v1/dossiers/{first}/status", "vn.gov.dossier.status-changed",
                  status(first, 2, "Đã tiếp nhận hồ sơ"))
    soap_progress(settings, province, first)
    province.post(f"/v1/dossiers/{first}/status", "vn.gov.dossier.status-changed",
                  status(first, 4, "Đang xử lý"))
    wait_for(lambda: str(sims.npsp.dossier(first)["TrangThaiHoSo"]) == "4", PATIENCE,
             "the portal to show status 4")
    wait_for(lambda: sims.npsp.progress_of(first), PATIENCE,
             "the portal to have the progress step")
    say(f"   portal status of {first}: 4 (processing); progress steps: "
        f"{len(sims.npsp.progress_of(first))} (reported over SOAP 1.2, XML-DSig signed)")

    step("4. a fee: payment requested, the citizen pays, the gateway calls back")
    reference = f"LT{counter}{secrets.token_hex(3).upper()}"
    province.post(f"/v1/dossiers/{first}/payments", "vn.gov.payment.requested", {
        "dossier_code": first, "procedure_code": "2.002492", "agency_code": AGENCY,
        "reference": reference, "amount": "75000", "description": f"Lệ phí hồ sơ {first}",
        "fees": [{"code": "LP-XD", "name": "Lệ phí cấp giấy phép xây dựng",
                  "amount": "75000", "kind": 2}],
        "payer": {"identity_number": "001090012345", "name": "Nguyễn Văn An"}})
    entries = wait_for(lambda: [
        e for e in province.timeline(first) if e["event_type"] == "vn.gov.payment.initiated"
    ], PATIENCE, "the payment URL")
    say(f"   gateway payment URL: {entries[0]['summary'].get('payment_url', '(see timeline)')}")
    statuses = sims.payment.pay(reference, "paid")
    say(f"   citizen paid; the gateway called the hub back: HTTP {statuses}")
    wait_for(lambda: has(province.timeline(first), "vn.gov.payment.completed", paid=True),
             PATIENCE, "the payment to complete")
    say("   payment completed (checksum verified)")

    step("5. resolved; the result goes back to the citizen by post")
    province.post(f"/v1/dossiers/{first}/status", "vn.gov.dossier.status-changed",
                  status(first, 9, "Đã có kết quả"))
    province.post(f"/v1/dossiers/{first}/postal-orders", "vn.gov.postal.pickup-requested", {
        "dossier_code": first, "direction": "return", "cod_amount": "0",
        "description": "Giấy phép xây dựng",
        "sender": {"name": "Trung tâm Phục vụ hành chính công tỉnh Thanh Hóa",
                   "address": "Số 28 Đại lộ Lê Lợi", "phone": "02373750000",
                   "province": "38", "district": "380"},
        "receiver": {"name": "Nguyễn Văn An", "address": "Số 1 phố Thử Nghiệm",
                     "phone": "0912345678", "province": "38", "district": "380"}})
    waybill = wait_for(lambda: next(
        (item for item, o in sims.postal.orders.items() if o.order_number == first), None
    ), PATIENCE, "the postal order")
    say(f"   postal order accepted on waybill {waybill}")
    for state in (2, 3):
        sims.postal.advance(waybill, state, "Đã nhận" if state == 2 else "Đã phát thành công")
    wait_for(lambda: has(province.timeline(first), "vn.gov.postal.tracking-updated", state=3),
             PATIENCE, "tracking: delivered")
    say("   postal service pushed tracking: collecting, then delivered")
    province.post(f"/v1/dossiers/{first}/status", "vn.gov.dossier.status-changed",
                  status(first, 10, "Đã trả kết quả"))
    wait_for(lambda: str(sims.npsp.dossier(first)["TrangThaiHoSo"]) == "10", PATIENCE,
             "the portal to show status 10")
    say(f"   portal status of {first}: 10 (result returned)")

    step("6. the portal goes down while the province submits another dossier")
    third = f"{AGENCY}-{day}-{counter + 2:04d}"
    sims.npsp.pause()
    province.post("/v1/dossiers", "vn.gov.dossier.submitted", dossier(third, channel=1))
    say(f"   portal is down: {third} walks the retry tiers "
        f"({', '.join(f'{t:g}s' for t in settings.retry_tiers)})…")
    wait_for(lambda: _retried(settings), 30, "a retry of the submission")
    sims.npsp.resume()
    say("   portal is back")
    wait_for(lambda: sims.npsp.dossier(third), 90, "the portal to have the third dossier")
    say(f"   {third} reached the portal after the outage; nothing was lost")

    step("7. a forged message: signed by a key the hub does not trust")
    forged_id = _publish_forged(settings, second)
    wait_for(lambda: _depth(settings, Names(settings.name_prefix).invalid) >= 1, PATIENCE,
             "the forged message to be parked")
    say(f"   forged message {forged_id} parked in {Names(settings.name_prefix).invalid}")
    return [first, second, third]


def _depth(settings: Settings, queue: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


def _retried(settings: Settings) -> bool:
    names = Names(settings.name_prefix)
    return any(_depth(settings, names.retry(i)) for i in range(len(settings.retry_tiers)))


def _publish_forged(settings: Settings, code: str) -> str:
    """A status change claiming to come from the province, signed by a key nobody trusts."""
    impostor = generate(PROVINCE)
    assert impostor.certificate is not None
    signer = Signer(impostor.private_key, impostor.certificate)
    env = Envelope.new(source=PROVINCE, type="vn.gov.dossier.status-changed", subject=code,
                       agency=AGENCY, procedure="2.002492",
                       data={"dossier_code": code, "status": 9,
                             "at": datetime.now(VN_TZ).isoformat()})
    out = Outgoing.signed(env, signer, Names(settings.name_prefix).events)
    conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(out.exchange, out.routing_key, out.body, out.properties(),
                         mandatory=True)
    finally:
        conn.close()
    return env.id


def _delete_topology(topology: Topology, amqp_url: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        ch = conn.channel()
        for q in topology.queues:
            ch.queue_delete(q.name)
        for ex in topology.exchanges:
            ch.exchange_delete(ex.name)
    finally:
        conn.close()


def report(settings: Settings, store: Store, province: Upstream, codes: list[str]) -> None:
    step("timelines")
    for code in codes:
        say(f"   {code}")
        for e in province.timeline(code):
            at = datetime.fromisoformat(e["at"]).astimezone(VN_TZ).strftime("%H:%M:%S")
            facts = ", ".join(f"{k}={v}" for k, v in e["summary"].items()
                              if k not in ("procedure_code", "channel"))
            say(f"     {at}  {e['event_type']:<40} {facts}")
    step("queues")
    names = Names(settings.name_prefix)
    for queue in (names.dead, names.invalid, names.unroutable):
        say(f"   {queue:<28} {_depth(settings, queue)} message(s)")
    step("message log")
    store.link_log()
    result = store.verify_log()
    say(f"   {result.checked} rows, hash chain {'intact' if result.ok else 'BROKEN'}")
    if not result.ok:
        raise SystemExit(f"demo: the message log does not verify: {result.problems}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("var/demo"),
                        help="where the demo keeps its store, keys and configuration")
    parser.add_argument("--keep", action="store_true",
                        help="keep the demo's queues (by default they are deleted at the end)")
    args = parser.parse_args()

    if args.data_dir.exists():
        shutil.rmtree(args.data_dir)
    args.data_dir.mkdir(parents=True)
    # Secrets of this run: the gateway's checksum secret and the postal webhook's token open
    # the hub's callbacks of those systems (shut while unset), and their simulators sign or
    # send with them.
    for name in ("NPSP_USERNAME", "NPSP_PASSWORD", "LIENTHONG_PAYMENT_SECRET",
                 "LIENTHONG_POSTAL_WEBHOOK_TOKEN"):
        os.environ.setdefault(name, secrets.token_urlsafe(16))
    settings = Settings(
        data_dir=args.data_dir,
        amqp_url=os.environ.get("LIENTHONG_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
        name_prefix=f"ltdemo{secrets.token_hex(3)}",
        retry_tiers=[1.0, 2.0, 4.0, 8.0],
        clients_file=args.data_dir / "clients.toml",
    )
    say(f"Liên Thông Hub demo: data in {args.data_dir}, queues {settings.name_prefix}.*")
    signers = make_keys(settings)
    api_keys = write_clients(settings)

    from hub.api.app import create_app

    api = SimulatorServer(None, lifespan="on")  # the app needs the port first (callbacks)
    hub_url = api.base_url
    sims = Simulators(settings, hub_url)
    sims.start()
    topology = Topology.from_settings(settings)
    declare.apply(topology, settings.amqp_url)
    say(f"   topology {settings.name_prefix}: {len(topology.queues)} queues, "
        f"simulators of {len(sims.all)} systems started")
    store = Store.open(settings.store_url)
    api.app = create_app(settings, store=store)
    api.start()
    workers = Workers(settings, store)
    workers.start()
    say(f"   hub entry point at {hub_url} (REST /v1, SOAP /soap/v1), "
        f"{len(workers.workers)} workers consuming")
    province = Upstream(hub_url, api_keys[PROVINCE], signers[PROVINCE])
    portal = Upstream(hub_url, api_keys[PORTAL], signers[PORTAL])
    try:
        codes = play(settings, sims, province, portal)
        report(settings, store, province, codes)
    except TimedOut as stuck:
        raise SystemExit(f"demo: {stuck}") from None
    finally:
        workers.stop()
        api.stop()
        sims.stop()
        store.close()
        if not args.keep:
            _delete_topology(topology, settings.amqp_url)
    say("\ndemo finished: every dossier reached every system it was meant to.")


if __name__ == "__main__":
    main()
