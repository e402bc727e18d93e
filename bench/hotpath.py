"""Does each hot-path measure of docs/performance.md still pay? One experiment per measure, each
running the hub's way and the plain way in the same process, interleaved, so that a shared
machine's drift falls on both alike.

    .venv/bin/python bench/hotpath.py [frames] [heap] [bulk] [linker] [xmldsig] [metrics]
        [verify] [contract] [transport] [direct] [timeline] [sequences] [es256] [routes]
        [envelopes] [policy]
        [--rounds 3]
        [--amqp-url URL] [--pg-url URL]

- frames: CPU per publish of ``hub.broker.Publisher`` with pika's write buffer coalesced
  (``hub.broker.connection._coalesce_writes``) and without (one send(2) per frame);
- heap: the pause of a full collection in a process holding the hub's app, before and after
  ``hub.broker.heap.freeze_startup_heap``;
- bulk: one batch of 64 outbox rows written by ``hub.store.bulk.BulkInsert`` against
  SQLAlchemy's ``executemany`` (SQLite, from a writer thread while the main thread keeps the
  GIL busy as an event loop does, at the interpreter's and at the hub's switch interval), and
  on PostgreSQL the array form (``unnest``) against a VALUES list of the same rows;
- linker: the log linker on PostgreSQL under a steady stream of commits, with its pace
  (``hub.store.linker.PACE``) and without: passes per second and the process's CPU;
- xmldsig: verifying and signing a 5 KB request with the hub's one profile
  (``hub.api.soap.xmldsig``) against signxml.
- verify: the same signed event checked again by a worker process's verifier, which remembers
  what it verified (``hub.signing.verifier``), against a verifier checking it anew;
- contract: a valid portal request checked by ``hub.contracts`` (jsonschema-rs first) against
  jsonschema alone;
- transport: the client's CPU per POST, 256 in flight to a local server, over aiohttp's pool
  (``hub.transport.aio``) against the small httpx pools it replaced;
- direct: a portal call's CPU through ``HttpTransport.send``, 256 in flight, straight to
  aiohttp's session (``AiohttpPool.exchange``) against httpx's request and response around
  the same pool;
- es256: an intake request's ES256 signature made and verified straight on cryptography
  (``hub.signing.algorithms``) against joserfc's generic path;
- envelopes: an event's envelope decoded by the three consumers of a worker process, the
  recorder and the fan-out sharing one decoding (``hub.broker.consumer.SharedEnvelopes``),
  against each of the three decoding its own;
- policy: a destination call answered at once, through its ``CallPolicy`` with the first
  attempt made before tenacity is (``hub.outbound``), against every call through tenacity;
- routes: a request through the app's middlewares to a plain ASGI route on the app's own
  router (``hub.api.app``) against the same route in an included router;
- timeline: the recorder's rows of 500 deliveries committed together (SQLite), kept and
  written in one statement at commit against a statement each.

Without names, every experiment runs. Prints each figure with both ways and their ratio;
writes bench/results/hotpath.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "hotpath.json"


def median_of(rounds: int, *ways: Callable[[], float]) -> list[float]:
    """Each way ``rounds`` times, interleaved; the median of each."""
    samples: list[list[float]] = [[] for _ in ways]
    for _ in range(rounds):
        for i, way in enumerate(ways):
            samples[i].append(way())
    return [statistics.median(s) for s in samples]


def report(name: str, unit: str, hub: float, plain: float, results: dict[str, Any],
           hub_label: str = "hub", plain_label: str = "plain") -> None:
    ratio = plain / hub if hub else float("inf")
    print(f"{name}: {hub_label} {hub:.1f} {unit}, {plain_label} {plain:.1f} {unit} "
          f"(plain / hub {ratio:.2f})")
    results[name] = {"unit": unit, hub_label: hub, plain_label: plain,
                     "plain_over_hub": ratio}


# -- frames: pika's write buffer coalesced -------------------------------------------------------

def frames(args: argparse.Namespace, results: dict[str, Any]) -> None:
    import pika

    from hub.broker import connection
    from hub.broker.messages import Outgoing
    from hub.broker.publisher import Publisher
    from hub.settings import Settings

    queue = f"lthotpath.frames.{uuid.uuid4().hex[:8]}"
    declare = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    # Bounded and dropping: the broker keeps nothing of the run.
    declare.channel().queue_declare(queue, arguments={"x-max-length": 1000,
                                                      "x-overflow": "drop-head"})
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="lthotpath-")),
                        amqp_url=args.amqp_url)
    body = os.urandom(1024).hex().encode()  # 2 KB, as the relay benchmark's
    coalesce = connection._coalesce_writes

    async def publish(n: int) -> float:
        publisher = Publisher(args.amqp_url, settings, name="lthotpath frames")
        await publisher.start()
        try:
            started = time.process_time()
            futures = []
            for i in range(n):
                await publisher.wait_for_room()
                futures.append(publisher.publish_nowait(Outgoing(
                    body, "", queue, f"m{i}", "bench.frames")))
            await asyncio.gather(*futures)
            return (time.process_time() - started) / n * 1e6
        finally:
            await publisher.close()

    def way(coalesced: bool) -> Callable[[], float]:
        def run() -> float:
            connection._coalesce_writes = coalesce if coalesced else (lambda conn: None)
            try:
                return asyncio.run(publish(args.messages))
            finally:
                connection._coalesce_writes = coalesce
        return run

    try:
        hub, plain = median_of(args.rounds, way(True), way(False))
    finally:
        declare.channel().queue_delete(queue)
        declare.close()
    report("frames: CPU per publish", "µs", hub, plain, results, "coalesced", "per frame")


# -- heap: the start-up heap frozen --------------------------------------------------------------

def heap(args: argparse.Namespace, results: dict[str, Any]) -> None:
    from hub.api.app import create_app
    from hub.broker.heap import freeze_startup_heap
    from hub.settings import Settings
    from hub.signing import generate

    data = Path(tempfile.mkdtemp(prefix="lthotpath-"))
    settings = Settings(data_dir=data, amqp_url=args.amqp_url,
                        store_url=f"sqlite:///{data / 'hub.db'}")
    generate(settings.hub_id).save(settings.keys_dir)
    app = create_app(settings, relay=False, soap=False)  # what a serve worker holds

    def pause(frozen: bool) -> Callable[[], float]:
        """A full collection once the worker is serving: what it allocated since start-up (the
        requests' own objects, some in cycles) is walked either way; the start-up heap only
        while it is not frozen."""
        def run() -> float:
            gc.unfreeze()
            if frozen:
                freeze_startup_heap()
            since = [{"n": i, "list": [i] * 4} for i in range(20_000)]
            started = time.perf_counter()
            gc.collect()
            took = (time.perf_counter() - started) * 1000
            del since
            return took
        return run

    hub, plain = median_of(max(5, args.rounds), pause(True), pause(False))
    gc.unfreeze()
    gc.collect()
    startup = len(gc.get_objects())
    del app
    report("heap: full collection pause", "ms", hub, plain, results, "frozen", "unfrozen")
    results["heap: full collection pause"]["startup_objects"] = startup
    print(f"  objects alive at start-up, which freezing takes out of the walk: {startup}")


# -- bulk: one statement per batch, of a fixed text ----------------------------------------------

def outbox_rows(n: int) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC)
    body = os.urandom(1024).hex().encode()
    return [(now, str(uuid.uuid4()), "vn.gov.dossier.submitted", "VN:GOV:000.00.00.H56:igate",
             "lienthong.events", "dossier.submitted.000_00_00_H56.2_002492",
             {"lt-signature": "x" * 120}, body, None, None) for _ in range(n)]


COLUMNS = ("created_at", "message_id", "type", "app_id", "exchange", "routing_key", "headers",
           "body", "claimed_until", "published_at")


@contextmanager
def busy_loop() -> Iterator[None]:
    """The main thread kept busy with Python code, as a serving event loop keeps it."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(200))

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        yield
    finally:
        stop.set()
        spinner.join()


def bulk(args: argparse.Namespace, results: dict[str, Any]) -> None:
    from sqlalchemy import insert

    from hub.store import Store
    from hub.store.bulk import BulkInsert
    from hub.store.tables import outbox
    from hub.testing.store import scratch_url

    rows = outbox_rows(64)
    writer = BulkInsert(outbox, COLUMNS)
    directory = Path(tempfile.mkdtemp(prefix="lthotpath-"))

    def timed_in_thread(store: Store, write: Callable[[Any], None], batches: int) -> float:
        """Milliseconds per batch written by a thread of its own, the main thread busy."""
        took: list[float] = []

        def run() -> None:
            for _ in range(batches):
                with store.engine.begin() as conn:  # its commit (an fsync) is not counted
                    started = time.perf_counter()
                    write(conn)
                    took.append((time.perf_counter() - started) * 1000)

        with busy_loop():
            thread = threading.Thread(target=run)
            thread.start()
            thread.join()
        return statistics.median(took)

    with scratch_url("sqlite:///unused.db", directory) as url:
        store = Store.open(url)
        try:
            switch = sys.getswitchinterval()
            for interval, label in ((0.005, "5 ms"), (0.0005, "0.5 ms")):
                sys.setswitchinterval(interval)
                try:
                    hub, plain = median_of(
                        args.rounds,
                        lambda: timed_in_thread(store, lambda c: writer.execute(c, rows), 20),
                        lambda: timed_in_thread(
                            store, lambda c: c.execute(insert(outbox),
                                                       [dict(zip(COLUMNS, r, strict=True))
                                                        for r in rows]), 20))
                finally:
                    sys.setswitchinterval(switch)
                report(f"bulk: SQLite, 64 rows from a writer thread, switch interval {label}",
                       "ms", hub, plain, results, "one statement", "executemany")
        finally:
            store.close()

    if not args.pg_url:
        return
    with scratch_url(args.pg_url, directory) as url:
        store = Store.open(url)
        try:
            values_sql = writer._statement(store.engine.dialect, len(rows))
            flat = tuple(v for row in writer.prepare(store.engine.dialect, rows).rows
                         for v in row)

            def cpu_per_batch(write: Callable[[Any], None], batches: int = 30) -> float:
                with store.engine.begin() as conn:
                    write(conn)  # the first execution prepares
                    started = time.process_time()
                    for _ in range(batches):
                        write(conn)
                    return (time.process_time() - started) / batches * 1000

            hub, plain = median_of(
                args.rounds,
                lambda: cpu_per_batch(lambda c: writer.execute(c, rows)),
                lambda: cpu_per_batch(lambda c: c.exec_driver_sql(values_sql, flat)))
            report("bulk: PostgreSQL, 64 rows, the process's CPU", "ms", hub, plain, results,
                   "arrays (unnest)", "VALUES list")
        finally:
            store.close()


# -- linker: the log linker's pace ---------------------------------------------------------------

def linker(args: argparse.Namespace, results: dict[str, Any]) -> None:
    if not args.pg_url:
        print("linker: needs --pg-url (the linker runs on PostgreSQL only)")
        return
    from hub.store import Store, messagelog
    from hub.store.linker import PACE
    from hub.store.messagelog import LogFields
    from hub.testing.store import scratch_url

    directory = Path(tempfile.mkdtemp(prefix="lthotpath-"))
    link_pending = messagelog.link_pending
    passes = [0]

    def counted(engine: Any) -> int:
        passes[0] += 1
        linked: int = link_pending(engine)
        return linked

    def run(store: Store, pace: float, seconds: float = 5.0, rate: float = 400.0) -> float:
        """Commits at ``rate`` per second from two threads, two log rows each; returns the
        process's CPU in ms per second, and counts the linker's passes."""
        store._linker._pace = pace  # type: ignore[union-attr]
        passes[0] = 0
        stop = time.monotonic() + seconds

        def commit() -> None:
            step = 2 / rate
            due = time.monotonic()
            while due < stop:
                with store.begin() as tx:
                    for _ in range(2):
                        tx.log("in", LogFields(str(uuid.uuid4()), "bench.linker"), "0" * 64,
                               "bench")
                due += step
                time.sleep(max(0.0, due - time.monotonic()))

        started = time.process_time()
        threads = [threading.Thread(target=commit) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        store.link_log()
        return (time.process_time() - started) / seconds * 1000

    messagelog.link_pending = counted
    try:
        with scratch_url(args.pg_url, directory) as url:
            store = Store.open(url)
            try:
                paced_passes: list[int] = []
                eager_passes: list[int] = []

                def paced() -> float:
                    cpu = run(store, PACE)
                    paced_passes.append(passes[0])
                    return cpu

                def eager() -> float:
                    cpu = run(store, 0.0)
                    eager_passes.append(passes[0])
                    return cpu

                hub, plain = median_of(args.rounds, paced, eager)
            finally:
                store.close()
    finally:
        messagelog.link_pending = link_pending
    report("linker: the process's CPU at 400 commits/s", "ms/s", hub, plain, results,
           f"paced {PACE * 1000:.0f} ms", "unpaced")
    results["linker: passes in 5 s"] = {"paced": statistics.median(paced_passes),
                                        "unpaced": statistics.median(eager_passes)}
    print(f"  linker passes in 5 s: paced {statistics.median(paced_passes):.0f}, "
          f"unpaced {statistics.median(eager_passes):.0f}")


# -- xmldsig: the hub's one XML-DSig profile ----------------------------------------------------

def xmldsig(args: argparse.Namespace, results: dict[str, Any]) -> None:
    import copy

    from lxml import etree
    from signxml.algorithms import (
        CanonicalizationMethod,
        DigestAlgorithm,
        SignatureConstructionMethod,
        SignatureMethod,
    )
    from signxml.signer import XMLSigner
    from signxml.verifier import SignatureConfiguration, XMLVerifier

    from hub.api.soap.xmldsig import RSA_SHA256, check_enveloped, sign_enveloped
    from hub.signing import generate

    material = generate("VN:GOV:000.00.00.H56:igate", "RS256")
    key, cert = material.private_key, material.certificate
    ns = "urn:lienthong:hub:v1"
    attachments = "".join(
        f"<lt:attachment><lt:name>tep-{i}.pdf</lt:name><lt:url>https://files.example/{i}</lt:url>"
        f"<lt:sha256>{'0' * 64}</lt:sha256></lt:attachment>" for i in range(12))
    document = (f'<lt:SubmitDossier xmlns:lt="{ns}" Id="request"><lt:createdAt>'
                f"2025-01-01T08:00:00+07:00</lt:createdAt><lt:dossier>{attachments}"
                "</lt:dossier></lt:SubmitDossier>").encode()  # about 5 KB signed
    signed = sign_enveloped(etree.fromstring(document), key, cert)
    n = 200

    def per_call(work: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            started = time.process_time()
            for _ in range(n):
                work()
            return (time.process_time() - started) / n * 1e6
        return run

    def ours_verify() -> object:
        signature = signed[-1]
        reference = signature.find("{http://www.w3.org/2000/09/xmldsig#}SignedInfo/"
                                   "{http://www.w3.org/2000/09/xmldsig#}Reference")
        return check_enveloped(signed, signature, reference, cert.public_key(), RSA_SHA256)

    def signxml_verify() -> object:
        return XMLVerifier().verify(copy.deepcopy(signed), x509_cert=cert,
                                    expect_config=SignatureConfiguration(location="./"))

    signer = XMLSigner(method=SignatureConstructionMethod.enveloped,
                       signature_algorithm=SignatureMethod.RSA_SHA256,
                       digest_algorithm=DigestAlgorithm.SHA256,
                       c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0)

    hub, plain = median_of(args.rounds, per_call(ours_verify), per_call(signxml_verify))
    report("xmldsig: verify a 5 KB request", "µs", hub, plain, results, "profile", "signxml")
    hub, plain = median_of(
        args.rounds, per_call(lambda: sign_enveloped(etree.fromstring(document), key, cert)),
        per_call(lambda: signer.sign(etree.fromstring(document), key=key, cert=[cert],
                                     reference_uri="#request")))
    report("xmldsig: sign (RSA-2048 included)", "µs", hub, plain, results, "profile",
           "signxml")


# -- metrics: what the consumer's pipeline metrics add to a delivery ---------------------------

def metrics(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """A delivery's observations as hub.broker.consumer makes them (four stage timings, the
    clock read five times, one outcome counted) against the same loop without them."""
    from hub.broker.metrics import ConsumerMetrics

    consumer = ConsumerMetrics("worker:bench")
    stage = consumer.stage
    clock = time.perf_counter
    n = 100_000

    def observed() -> float:
        started = time.process_time()
        for _ in range(n):
            t0 = clock()
            t1 = clock()
            stage["verify"].observe(t1 - t0)
            t2 = clock()
            stage["handle"].observe(t2 - t1)
            t3 = clock()
            stage["record"].observe(t3 - t2)
            stage["confirm"].observe(clock() - t3)
            consumer.count("vn.gov.dossier.submitted", "handled")
        return (time.process_time() - started) / n * 1e6

    def bare() -> float:
        started = time.process_time()
        for _ in range(n):
            pass
        return (time.process_time() - started) / n * 1e6

    hub, plain = median_of(args.rounds, observed, bare)
    report("metrics: a delivery's observations", "µs", hub, plain, results, "observed", "none")


# -- verify: a signature checked once per process ------------------------------------------------

def verify(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """A worker process's second check of the same signed event (the recorder's, the fan-out's
    after the portal worker's), with the verifier remembering what it verified and with a
    verifier that does not (a new one per check)."""
    from hub.envelope import Envelope
    from hub.signing import TrustStore, generate
    from hub.signing.jws import Signer
    from hub.signing.verifier import Verifier

    source = "VN:GOV:000.00.00.H56:igate"
    material = generate(source, "ES256")
    trust = TrustStore(Path(tempfile.mkdtemp(prefix="lt-hotpath-")) / "trust")
    trust.add(material.certificate_pem())
    assert material.certificate is not None
    signer = Signer(material.private_key, material.certificate, "ES256")
    messages = []
    for i in range(2000):
        env = Envelope.new(source=source, type="vn.gov.dossier.submitted",
                           subject="000.00.00.H56-300101-0001", data={"i": i, "note": "x" * 800})
        body = env.to_bytes()
        messages.append((body, signer.sign(body, env), env))

    def again(remembering: bool) -> Callable[[], float]:
        def run() -> float:
            shared = Verifier(trust, max_age=300, clock_skew=60, retry_grace=0)
            for body, token, env in messages:  # the first consumer's checks
                shared.verify(body, token, env)
            started = time.process_time()
            for body, token, env in messages:
                checker = shared if remembering else Verifier(
                    trust, max_age=300, clock_skew=60, retry_grace=0)
                checker.verify(body, token, env)
            return (time.process_time() - started) / len(messages) * 1e6
        return run

    hub, plain = median_of(args.rounds, again(True), again(False))
    report("verify: the same signed event checked again", "µs", hub, plain, results,
           "remembered", "verified again")


def envelopes(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The envelope decodings of one event in a worker process, whose three consumers each
    receive its bytes (their own copy, as pika gives them): the portal's worker decodes its
    own, the recorder and the fan-out share one (``hub.broker.consumer.SharedEnvelopes``),
    against each of the three decoding it. CPU per event, the three decodings together."""
    from bench.intake import dossier_body
    from hub.broker.consumer import SharedEnvelopes
    from hub.envelope import Envelope

    source = "VN:GOV:000.00.00.H56:igate"
    events = []
    for i in range(2000):
        env = Envelope.new(source=source, type="vn.gov.dossier.submitted",
                           subject="000.00.00.H56-300101-0001",
                           data=json.loads(dossier_body(i, "hotpath")), sequence=i)
        body = env.to_bytes()
        # What each consumer receives: equal bytes, three objects.
        events.append((body, bytes(bytearray(body)), bytes(bytearray(body))))

    def decoding(shared: bool) -> Callable[[], float]:
        def run() -> float:
            cache = SharedEnvelopes(readers=2)
            recorder = fanout = cache.decode if shared else Envelope.from_bytes
            started = time.process_time()
            for portal_copy, recorder_copy, fanout_copy in events:
                Envelope.from_bytes(portal_copy)
                recorder(recorder_copy)
                fanout(fanout_copy)
            return (time.process_time() - started) / len(events) * 1e6
        return run

    hub, plain = median_of(args.rounds, decoding(True), decoding(False))
    report("envelopes: an event decoded by a worker process's three consumers", "µs", hub,
           plain, results, "recorder and fan-out sharing", "each its own")


def policy(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """A destination call's way through its ``CallPolicy`` (``hub.outbound``), the attempt
    answering at once as a portal's does, on uvloop as a worker runs: the first attempt made
    before tenacity is, against every call through tenacity's retrying object. CPU per call,
    the attempt's own (its timeout, the breaker, the observer) included."""
    import uvloop

    from hub.outbound import CallPolicy, PolicyConfig

    calls = 20000
    seen: list[str] = []

    async def answer() -> str:
        return "ok"

    def observe(outcome: str, seconds: float) -> None:
        seen.append(outcome)

    def calling(first_outside: bool) -> Callable[[], float]:
        async def run() -> float:
            policy = CallPolicy(f"hotpath-{uuid.uuid4().hex[:8]}", PolicyConfig())
            call = policy.call if first_outside else (
                lambda fn, observe: policy._retrying(fn, observe, None))
            started = time.process_time()
            for _ in range(calls):
                await call(answer, observe)
            seen.clear()
            return (time.process_time() - started) / calls * 1e6
        return lambda: uvloop.run(run())

    hub, plain = median_of(args.rounds, calling(True), calling(False))
    report("policy: a call answered at once", "µs", hub, plain, results,
           "first attempt outside tenacity", "through tenacity")


def es256(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """An intake request's two ES256 operations, the hub's way (straight on cryptography,
    hub.signing.algorithms) against joserfc's generic path: CPU per ``Signer.sign`` of a
    dossier's envelope, and per first ``Verifier.verify`` of a signed request (each request
    new, so nothing is remembered)."""
    from joserfc import jws

    import hub.signing.verifier as verifier_module
    from bench.intake import dossier_body
    from hub.envelope import Envelope
    from hub.signing import TrustStore, generate
    from hub.signing.algorithms import registry
    from hub.signing.jws import Signer
    from hub.signing.truststore import TrustedKey
    from hub.signing.verifier import Verifier

    source = "VN:GOV:000.00.00.H56:igate"
    material = generate(source, "ES256")
    trust = TrustStore(Path(tempfile.mkdtemp(prefix="lt-hotpath-")) / "trust")
    trust.add(material.certificate_pem())
    assert material.certificate is not None
    hub_signer = Signer(material.private_key, material.certificate, "ES256")
    plain_signer = Signer(material.private_key, material.certificate, "ES256")
    plain_signer._es256 = None  # joserfc's serialize_compact
    body = dossier_body(1, "hotpath")
    envs = [Envelope(id=str(uuid.uuid4()), source=source, type="vn.gov.dossier.submitted",
                     subject="-", time=datetime.now(UTC), data=None) for _ in range(2000)]

    def signing(signer: Signer) -> Callable[[], float]:
        def run() -> float:
            started = time.process_time()
            for env in envs:
                signer.sign(body, env)
            return (time.process_time() - started) / len(envs) * 1e6
        return run

    hub, plain = median_of(args.rounds, signing(hub_signer), signing(plain_signer))
    report("es256: sign an envelope", "µs", hub, plain, results, "cryptography", "joserfc")

    signed = [(hub_signer.sign(body, env), env) for env in envs]
    fast = verifier_module._validate_es256

    def joserfc_way(obj: jws.CompactSignature, key: TrustedKey) -> bool:
        return jws.validate_compact(obj, key.jose_key, registry=registry(key.alg))

    def verifying(check: Callable[[jws.CompactSignature, TrustedKey], bool]
                  ) -> Callable[[], float]:
        def run() -> float:
            verifier_module._validate_es256 = check
            try:
                checker = Verifier(trust, max_age=300, clock_skew=60, retry_grace=0)
                started = time.process_time()
                for token, env in signed:
                    checker.verify(body, token, env)
                return (time.process_time() - started) / len(signed) * 1e6
            finally:
                verifier_module._validate_es256 = fast
        return run

    hub, plain = median_of(args.rounds, verifying(fast), verifying(joserfc_way))
    report("es256: verify a signed request", "µs", hub, plain, results, "cryptography",
           "joserfc")


def routes(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """An intake request's way through the app (the hub's four middlewares, FastAPI's own, the
    router) to a plain ASGI route answering at once, on uvloop: the route on the app's own
    router, as hub.api.app puts the intake routes, against the route in an included router.
    CPU per request, the ASGI app called directly (no sockets)."""
    import uvloop
    from fastapi import APIRouter, FastAPI
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from hub.api import problems
    from hub.api.auth import RequestPeer
    from hub.api.limits import BodySizeLimit, RequestTimeoutLimit
    from hub.api.metrics import Metrics, RequestMetrics
    from hub.api.rest import _PlainEndpoint

    async def handle(request: Request) -> Response:
        await request.body()
        return Response(b'{"message_id":"x","duplicate":false}', status_code=202,
                        media_type="application/json")

    def app(included: bool) -> FastAPI:
        made = FastAPI(middleware=[
            Middleware(RequestMetrics, metrics=Metrics()),
            Middleware(RequestTimeoutLimit, seconds=30),
            Middleware(BodySizeLimit, max_bytes=1 << 20),
            Middleware(RequestPeer, trusted_proxies=[])])
        problems.install(made)
        route = Route("/v1/dossiers", _PlainEndpoint("/v1/dossiers", handle), methods=["POST"])
        if included:
            router = APIRouter()
            router.routes.append(route)
            made.include_router(router)
        else:
            made.router.routes.insert(0, route)
        return made

    body = b'{"note": "x"}' * 100
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/dossiers",
             "raw_path": b"/v1/dossiers", "root_path": "", "query_string": b"",
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    def way(made: FastAPI) -> Callable[[], float]:
        async def requests(n: int) -> float:
            started = time.process_time()
            for _ in range(n):
                await made({**scope, "state": {}}, receive, send)
            return (time.process_time() - started) / n * 1e6

        def run() -> float:
            return uvloop.run(requests(3000))
        return run

    own, included = app(False), app(True)
    hub, plain = median_of(args.rounds, way(own), way(included))
    assert set(statuses) == {202}, statuses
    report("routes: a request through the app to a plain route", "µs", hub, plain, results,
           "on the app's router", "in an included router")


# -- contract: a valid request recognised by jsonschema-rs ---------------------------------------

def contract(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """A portal DongBoHoSoMC request checked against schemas/npsp, as hub.contracts does
    (jsonschema-rs says valid) and by jsonschema alone."""
    from adapters.npsp.mapping import load_mapping
    from adapters.npsp.translate import dossier_to_record
    from bench.e2e import dossier
    from hub.contracts import Contract
    from hub.model import Dossier

    mapping = load_mapping(ROOT / "mappings" / "npsp")
    record = dossier_to_record(Dossier.model_validate(dossier("000.00.00.H56-300101-0001")),
                               mapping)
    b = mapping.body
    request = {b["session"]: "token", b["agency"]: "000.00.00.H56",
               b["service"]: "DongBoHoSoMC", b["updating"]: "False", b["data"]: [record]}
    fast = Contract(ROOT / "schemas" / "npsp")
    slow = Contract(ROOT / "schemas" / "npsp")
    slow._fast = {}
    n = 2000

    def check(contract: Contract) -> Callable[[], float]:
        def run() -> float:
            started = time.process_time()
            for _ in range(n):
                contract.validate("DongBoHoSoMC.request", request)
            return (time.process_time() - started) / n * 1e6
        return run

    hub, plain = median_of(args.rounds, check(fast), check(slow))
    report("contract: a valid portal request", "µs", hub, plain, results,
           "jsonschema-rs", "jsonschema")


# -- transport: the portal's calls over aiohttp ----------------------------------------------------

_SERVER = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = b'{"error_code": "0", "message": "ok", "data": []}'
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
# Connections kept as long as the run: a client reusing one the server just closed fails.
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            timeout_keep_alive=600)
"""


def transport(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The client's CPU per POST with 256 in flight to a local server (its own process), through
    one httpx.AsyncClient: over aiohttp's pool (hub.transport.aio) and over the small httpx
    pools it replaced (hub.transport.pools.PooledTransport), on uvloop as a worker runs."""
    import subprocess

    import httpx
    import uvloop

    from hub.simulation import free_port
    from hub.transport.aio import AiohttpPool
    from hub.transport.pools import PooledTransport

    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", _SERVER, str(port)])
    body = {"session": "token", "data": [{"field": "v" * 40, "n": i} for i in range(20)]}
    n = 3000

    def calls(make: Callable[[], httpx.AsyncBaseTransport]) -> Callable[[], float]:
        async def go() -> float:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                         transport=make()) as client:
                slots = asyncio.Semaphore(256)

                async def one() -> None:
                    async with slots:
                        (await client.post("/x", json=body)).raise_for_status()

                await asyncio.gather(*(one() for _ in range(300)))  # connections opened
                started = time.process_time()
                await asyncio.gather(*(one() for _ in range(n)))
                return (time.process_time() - started) / n * 1e6
        return lambda: uvloop.run(go())

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        hub, plain = median_of(args.rounds, calls(lambda: AiohttpPool.for_calls(256)),
                               calls(lambda: PooledTransport.for_calls(256)))
    finally:
        server.terminate()
        server.wait()
    report("transport: a POST with 256 in flight", "µs", hub, plain, results,
           "aiohttp pool", "httpx pools")


def _local_server(port: int) -> Any:
    """``_SERVER`` on ``port``, once it answers."""
    import subprocess

    import httpx

    server = subprocess.Popen([sys.executable, "-c", _SERVER, str(port)])
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return server
        except httpx.TransportError:
            if time.monotonic() > deadline:
                server.terminate()
                raise
            time.sleep(0.1)


def direct(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """A portal call's CPU in the worker's process through ``HttpTransport.send`` (what the
    portal's client calls), 256 in flight to a local server: straight to aiohttp's session
    (``AiohttpPool.exchange``) against the httpx request and response around the same pool
    (what it did before). On uvloop, as a worker runs."""
    import httpx
    import uvloop

    from hub.simulation import free_port
    from hub.transport.aio import AiohttpPool
    from hub.transport.base import Request
    from hub.transport.http import HttpTransport

    class ThroughHttpx(httpx.AsyncBaseTransport):
        """The same pool, offering httpx's transport interface only."""

        def __init__(self) -> None:
            self.pool = AiohttpPool.for_calls(256)

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return await self.pool.handle_async_request(request)

        async def aclose(self) -> None:
            await self.pool.aclose()

    port = free_port()
    server = _local_server(port)
    request = Request("DongBoHoSoMC", "/x", body={
        "session": "token", "data": [{"field": "v" * 40, "n": i} for i in range(20)]})
    n = 3000

    def calls(make: Callable[[], httpx.AsyncBaseTransport]) -> Callable[[], float]:
        async def go() -> float:
            http = HttpTransport("portal", "the portal", base_url=f"http://127.0.0.1:{port}",
                                 timeout=30, headers={"dstcode": "bench"}, transport=make())
            try:
                slots = asyncio.Semaphore(256)

                async def one() -> None:
                    async with slots:
                        await http.send(request)

                await asyncio.gather(*(one() for _ in range(300)))  # connections opened
                started = time.process_time()
                await asyncio.gather(*(one() for _ in range(n)))
                return (time.process_time() - started) / n * 1e6
            finally:
                await http.aclose()
        return lambda: uvloop.run(go())

    try:
        hub, plain = median_of(args.rounds, calls(lambda: AiohttpPool.for_calls(256)),
                               calls(ThroughHttpx))
    finally:
        server.terminate()
        server.wait()
    report("direct: a portal call with 256 in flight", "µs", hub, plain, results,
           "straight to aiohttp", "httpx around aiohttp")


# -- timeline: a batch of recordings' rows in one statement ---------------------------------------

def timeline_rows(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The timeline rows of 500 deliveries committed together, as a worker's consumer commits
    the recorder's (SQLite): kept and written in one statement at commit (``timeline_keep``)
    against a statement each (``timeline_add``). CPU per row."""
    from hub.store import Store
    from hub.store.timeline import TimelineEvent

    store = Store.open(f"sqlite:///{tempfile.mkdtemp(prefix='lt-hotpath-')}/hub.db")
    source = "VN:GOV:000.00.00.H56:igate"
    at = datetime.now(UTC)
    n = 500

    def events() -> list[TimelineEvent]:
        return [TimelineEvent(f"000.00.00.H56-300101-{i:04d}", "vn.gov.dossier.submitted",
                              str(uuid.uuid4()), at, source, {"status": 1, "channel": 1})
                for i in range(n)]

    def kept() -> float:
        batch = events()
        started = time.process_time()
        with store.begin() as tx:
            for event in batch:
                tx.timeline_keep(event)
        return (time.process_time() - started) / n * 1e6

    def each() -> float:
        batch = events()
        started = time.process_time()
        with store.begin() as tx:
            for e in batch:
                tx.timeline_add(e.dossier_code, e.event_type, e.message_id, e.at,
                                source=e.source, summary=e.summary)
        return (time.process_time() - started) / n * 1e6

    try:
        hub, plain = median_of(max(5, args.rounds), kept, each)
    finally:
        store.close()
    report("timeline: a recorded row of a batch", "µs", hub, plain, results,
           "one statement", "a statement each")


def sequences(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The portal's last applied sequence read by 200 deliveries at once (SQLite), as a
    worker's deliveries ask for it: gathered into one query and one thread hop
    (``hub.lastapplied.Sequencer``) against a query and a thread hop each. CPU per read."""
    from hub.lastapplied import Sequencer
    from hub.store import Store

    store = Store.open(f"sqlite:///{tempfile.mkdtemp(prefix='lt-hotpath-')}/hub.db")
    codes = [f"000.00.00.H56-300101-{i:04d}" for i in range(200)]
    for n, code in enumerate(codes[::2]):
        store.set_sequence("npsp", code, n)

    def gathered() -> float:
        sequencer = Sequencer(store, "npsp")

        async def reads() -> None:
            await asyncio.gather(*(sequencer.superseded_by(code, 1) for code in codes))

        started = time.process_time()
        asyncio.run(reads())
        return (time.process_time() - started) / len(codes) * 1e6

    def each() -> float:
        async def reads() -> None:
            await asyncio.gather(*(asyncio.to_thread(store.last_sequence, "npsp", code)
                                   for code in codes))

        started = time.process_time()
        asyncio.run(reads())
        return (time.process_time() - started) / len(codes) * 1e6

    try:
        hub, plain = median_of(max(5, args.rounds), gathered, each)
    finally:
        store.close()
    report("sequences: a delivery's last applied sequence", "µs", hub, plain, results,
           "read together", "a read each")


EXPERIMENTS: dict[str, Callable[[argparse.Namespace, dict[str, Any]], None]] = {
    "frames": frames, "heap": heap, "bulk": bulk, "linker": linker, "xmldsig": xmldsig,
    "metrics": metrics, "verify": verify, "contract": contract, "transport": transport,
    "direct": direct,
    "timeline": timeline_rows, "sequences": sequences, "es256": es256, "routes": routes,
    "envelopes": envelopes, "policy": policy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiments", nargs="*", help=f"of {', '.join(EXPERIMENTS)} "
                        "(default: all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=20_000, help="publishes per round")
    parser.add_argument("--amqp-url", default=os.environ.get(
        "LIENTHONG_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--pg-url", default=os.environ.get(
        "LIENTHONG_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
        help="PostgreSQL for bulk and linker (a schema of its own, dropped after); '' for none")
    args = parser.parse_args()
    unknown = sorted(set(args.experiments) - set(EXPERIMENTS))
    if unknown:
        parser.error(f"no experiment {', '.join(unknown)}; choose among "
                     f"{', '.join(EXPERIMENTS)}")
    results: dict[str, Any] = {"at": datetime.now(UTC).isoformat(), "cpus": os.cpu_count(),
                               "load_before": os.getloadavg(), "rounds": args.rounds}
    for name in args.experiments or list(EXPERIMENTS):
        EXPERIMENTS[name](args, results)
    results["load_after"] = os.getloadavg()
    print(f"load average {results['load_before'][0]:.1f} -> {results['load_after'][0]:.1f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
