"""Relay benchmark: a bare pika relay against the hub's relay, over the same signed messages,
in the same run (the machine is shared and noisy: the ratio is the figure that matters).

- bare relay: consume, publish, confirm, ack (pika asyncio, pipelined confirms, batched acks);
- hub relay: hub.broker.Consumer consuming, verifying (ES256), decoding, deriving and signing a
  new envelope, publishing with confirms and acking after the confirm;
- latency: the hub relay under a fixed offered rate (default 1,000 msg/s), end to end from
  the producer's publish to the sink's receipt; the bare relay the same way for reference.

Each relay runs in a process of its own. Prints the figures and writes JSON. With
``--processed sqlite`` each hub relay process keeps its processed ids in a SQLite store of its
own, as a worker does (looked up per message and recorded per ack batch, off the event loop);
by default it keeps none, as the bare relay.

    .venv/bin/python bench/relay.py [--messages 20000] [--rate 1000] [--seconds 10]
        [--processed none|sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import pika
from pika.adapters.asyncio_connection import AsyncioConnection

from hub.broker.consumer import Consumer
from hub.broker.heap import freeze_startup_heap
from hub.broker.messages import Outgoing
from hub.broker.publisher import Publisher
from hub.envelope import Envelope
from hub.settings import Settings
from hub.signing import Signer, TrustStore, Verifier, generate

SOURCE = "VN:GOV:000.00.00.H56:igate"
HUB = "VN:GOV:000.00.00.G22:lienthong"
QUORUM = {"x-queue-type": "quorum"}


# -- setup -----------------------------------------------------------------------------------


def make_keys(data_dir: Path) -> None:
    trust = TrustStore(data_dir / "trust")
    for system in (SOURCE, HUB):
        km = generate(system)
        km.save(data_dir / "keys")
        trust.add(km.certificate_pem())


def signer(data_dir: Path, system: str, relay: bool = False) -> Signer:
    from hub.signing import load_signer

    return load_signer(data_dir / "keys", system, relay=relay)


def message(sig: Signer, size: int, seq: int) -> Outgoing:
    pad = "x" * max(0, size - 420)
    env = Envelope.new(
        source=SOURCE,
        type="vn.gov.dossier.status-changed",
        subject="000.00.00.H56-250101-0001",
        agency="000.00.00.H56",
        procedure="2.002492",
        sequence=seq,
        data={"dossier_code": "000.00.00.H56-250101-0001", "status": 4, "note": pad},
    )
    return Outgoing.signed(env, sig, "", "")


def declare(url: str, *queues: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    for q in queues:
        ch.queue_delete(q)
        ch.queue_declare(q, durable=True, arguments=QUORUM)
    conn.close()


def delete(url: str, *queues: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    for q in queues:
        ch.queue_delete(q)
    conn.close()


def depth(url: str, queue: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


async def fill(settings: Settings, queue: str, messages: list[Outgoing]) -> float:
    pub = Publisher(settings.amqp_url, settings, max_in_flight=2000)
    await pub.start()
    t0 = time.perf_counter()
    futures = []
    for m in messages:
        m.routing_key = queue
        futures.append(pub.publish_nowait(m))
        if len(futures) % 1000 == 0:
            await asyncio.sleep(0)
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - t0
    await pub.close()
    return len(messages) / elapsed


# -- the two relays, each in its own process --------------------------------------------------


def bare_relay(url: str, src: str, dst: str, stop_after: int | None, ready: Any, done: Any) -> None:
    """Consume src, publish to dst with confirms, ack src once the copy is confirmed."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    state: dict[str, Any] = {"seq": 0, "relayed": 0, "unacked": 0, "last_tag": 0}
    pending: deque[list[int]] = deque()  # [publish seq, source tag, confirmed]
    channels: dict[str, Any] = {}

    def on_confirm(frame: Any) -> None:
        tag, multiple = frame.method.delivery_tag, frame.method.multiple
        for entry in pending:
            if entry[0] > tag:
                break
            if multiple or entry[0] == tag:
                entry[2] = 1
        top = 0
        while pending and pending[0][2]:
            top = pending.popleft()[1]
            state["relayed"] += 1
            state["unacked"] += 1
        if top and (state["unacked"] >= 100 or not pending):
            channels["in"].basic_ack(top, multiple=True)
            state["unacked"] = 0
        if stop_after and state["relayed"] >= stop_after:
            done.set()

    def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
        channels["out"].basic_publish("", dst, body, props)
        state["seq"] += 1
        pending.append([state["seq"], method.delivery_tag, 0])

    def on_out(ch: Any) -> None:
        channels["out"] = ch
        ch.confirm_delivery(on_confirm)
        conn.channel(on_open_callback=on_in)

    def on_in(ch: Any) -> None:
        channels["in"] = ch
        ch.basic_qos(prefetch_count=500,
                     callback=lambda _: (ch.basic_consume(src, on_message), ready.set()))

    conn = AsyncioConnection(
        pika.URLParameters(url),
        on_open_callback=lambda c: c.channel(on_open_callback=on_out),
        custom_ioloop=loop,
    )

    async def wait_done() -> None:
        while not done.is_set():
            await asyncio.sleep(0.01)
        conn.close()

    loop.run_until_complete(wait_done())


def processed_ids(data_dir: Path) -> Any:
    """The processed ids of ``--processed`` (passed to the relay processes in the environment):
    a store of this process's own, or None."""
    if os.environ.get("LTBENCH_PROCESSED", "none") == "none":
        return None
    from hub.store import Store

    return Store.open(f"sqlite:///{data_dir / f'processed-{os.getpid()}.db'}").processed


def hub_relay(url: str, data_dir: str, src: str, dst: str, ready: Any, done: Any) -> None:
    """The hub's relay: Consumer (decode, verify) → handler (derive, sign) → publish."""
    settings = Settings(data_dir=Path(data_dir), amqp_url=url, name_prefix="ltbench")
    trust = TrustStore(Path(data_dir) / "trust")
    verifier = Verifier.from_settings(settings, trust, queued=True)
    hub_signer = signer(Path(data_dir), HUB, relay=True)

    async def handler(delivery: Any) -> list[Outgoing]:
        env = delivery.envelope
        out = Outgoing.signed(env.derive(source=HUB, type=env.type, data=env.data), hub_signer,
                              "", dst)
        sent = delivery.headers.get("bench-sent")
        if sent is not None:  # only the latency run stamps messages
            out.headers["bench-sent"] = sent
        return [out]

    processed = processed_ids(Path(data_dir))

    async def main() -> None:
        consumer = Consumer(settings, src, handler, verifier=verifier, name="bench hub relay",
                            processed=processed)
        consumer.start()
        await consumer.wait_consuming()
        freeze_startup_heap()  # as the hub's workers do once set up
        ready.set()
        while not done.is_set():
            await asyncio.sleep(0.01)
        await consumer.stop()

    asyncio.run(main())


# -- measurements ----------------------------------------------------------------------------


def start_relay(kind: str, url: str, data_dir: Path, src: str, dst: str, stop_after: int | None,
                processes: int = 1) -> tuple[list[Any], Any]:
    """Start the relay (``processes`` hub relay processes sharing the source queue, or one bare
    relay) and wait until every process consumes; returns the processes and their stop event."""
    done = mp.Event()
    procs, readies = [], []
    for _ in range(processes if kind == "hub" else 1):
        ready = mp.Event()
        if kind == "bare":
            proc = mp.Process(target=bare_relay, args=(url, src, dst, stop_after, ready, done))
        else:
            proc = mp.Process(target=hub_relay, args=(url, str(data_dir), src, dst, ready, done))
        proc.start()
        procs.append(proc)
        readies.append(ready)
    for ready in readies:
        if not ready.wait(60):
            for p in procs:
                p.kill()
            raise SystemExit(f"{kind} relay did not start")
    return procs, done


def timed_relay(kind: str, url: str, data_dir: Path, src: str, dst: str, n: int,
                processes: int = 1) -> float:
    """Start the relay on a full ``src``; time until ``dst`` holds all ``n``."""
    procs, done = start_relay(kind, url, data_dir, src, dst, n, processes)
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    t0 = time.perf_counter()
    deadline = t0 + 600
    shown = 0
    while True:
        count = ch.queue_declare(dst, passive=True).method.message_count
        if count >= n:
            break
        if time.perf_counter() > deadline:
            raise SystemExit(f"{kind} relay moved only {count}/{n} in 600 s")
        if count - shown >= n // 10:
            shown = count
            print(f"  {kind}: {count}/{n}", file=sys.stderr)
        time.sleep(0.005)
    elapsed = time.perf_counter() - t0
    done.set()
    for proc in procs:
        proc.join(30)
    conn.close()
    return n / elapsed


async def paced_latency(settings: Settings, sig: Signer, src: str, dst: str, rate: float,
                        seconds: float, size: int) -> list[float]:
    """Offer ``rate`` msg/s to ``src`` for ``seconds``; latency measured at ``dst``'s sink."""
    latencies: list[float] = []
    total = int(rate * seconds)
    got = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
        sent = float(props.headers["bench-sent"])
        latencies.append(time.time() - sent)
        ch.basic_ack(method.delivery_tag)
        if len(latencies) >= total:
            got.set()

    opened: asyncio.Future[Any] = loop.create_future()
    sink = AsyncioConnection(pika.URLParameters(settings.amqp_url),
                             on_open_callback=lambda c: c.channel(
                                 on_open_callback=lambda ch: opened.set_result(ch)),
                             custom_ioloop=loop)
    ch = await opened
    ch.basic_qos(prefetch_count=1000)
    ch.basic_consume(dst, on_message)
    pub = Publisher(settings.amqp_url, settings)
    await pub.start()
    start = time.perf_counter()
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        m = message(sig, size, i)
        m.routing_key = src
        m.headers["bench-sent"] = repr(time.time())
        pub.publish_nowait(m)
    await asyncio.wait_for(got.wait(), timeout=seconds + 60)
    await pub.close()
    sink.close()
    return latencies


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def latency_run(kind: str, settings: Settings, data_dir: Path, sig: Signer, rate: float,
                seconds: float, size: int, processes: int = 1) -> dict[str, float]:
    src, dst = f"ltbench.lat.{kind}.src", f"ltbench.lat.{kind}.dst"
    declare(settings.amqp_url, src, dst)
    procs, done = start_relay(kind, settings.amqp_url, data_dir, src, dst, None, processes)
    lat = asyncio.run(paced_latency(settings, sig, src, dst, rate, seconds, size))
    done.set()
    for proc in procs:
        proc.join(30)
    delete(settings.amqp_url, src, dst)
    ms = [x * 1000 for x in lat]
    return {"offered_rate": rate, "messages": len(ms), "processes": processes,
            "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "max_ms": max(ms),
            "mean_ms": statistics.fmean(ms)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--size", type=int, default=2048, help="body size in bytes")
    ap.add_argument("--rate", type=float, default=1000.0, help="offered rate for latency")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of the latency run")
    ap.add_argument("--amqp-url", default=os.environ.get("LIENTHONG_AMQP_URL",
                                                         "amqp://guest:guest@127.0.0.1:5672/%2F"))
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 2,
                    help="hub relay processes for the multi-process run (the bare relay and the "
                         "single-process hub relay are always measured too)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/relay.json"))
    ap.add_argument("--processed", choices=["none", "sqlite"], default="none",
                    help="where the hub's relay keeps its processed ids (default: nowhere)")
    args = ap.parse_args()
    os.environ["LTBENCH_PROCESSED"] = args.processed  # read by the relay processes

    data_dir = Path(tempfile.mkdtemp(prefix="ltbench-"))
    make_keys(data_dir)
    settings = Settings(data_dir=data_dir, amqp_url=args.amqp_url, name_prefix="ltbench")
    sig = signer(data_dir, SOURCE)
    n = args.messages
    print(f"signing {n} messages of {args.size} bytes…", file=sys.stderr)
    messages = [message(sig, args.size, i) for i in range(n)]
    body_size = len(messages[0].body)

    run = uuid.uuid4().hex[:6]
    results: dict[str, Any] = {"messages": n, "body_bytes": body_size,
                               "hub_processes": args.processes, "processed": args.processed,
                               "load_average_before": os.getloadavg()}
    runs = [("bare", "bare", 1), ("hub", "hub", 1), ("hub_multi", "hub", args.processes)]
    for label, kind, procs in runs:
        src, dst = f"ltbench.{run}.{label}.src", f"ltbench.{run}.{label}.dst"
        declare(args.amqp_url, src, dst)
        asyncio.run(fill(settings, src, messages))
        rate = timed_relay(kind, args.amqp_url, data_dir, src, dst, n, procs)
        results[f"{label}_relay_rate"] = rate
        print(f"{label} relay ({procs} process{'es' if procs > 1 else ''}): {rate:.0f} msg/s",
              file=sys.stderr)
        delete(args.amqp_url, src, dst)
    results["ratio_hub_to_bare"] = results["hub_relay_rate"] / results["bare_relay_rate"]
    results["ratio_hub_multi_to_bare"] = (results["hub_multi_relay_rate"]
                                          / results["bare_relay_rate"])
    for label, kind, procs in runs:
        print(f"latency of the {label} relay at {args.rate:.0f} msg/s…", file=sys.stderr)
        results[f"{label}_latency"] = latency_run(kind, settings, data_dir, sig, args.rate,
                                                  args.seconds, args.size, procs)
    results["load_average_after"] = os.getloadavg()
    best = max(("hub", "hub_multi"), key=lambda k: results[f"{k}_relay_rate"])
    results["goals"] = {
        "hub_relay_at_least_4000": results[f"{best}_relay_rate"] >= 4000,
        "hub_at_least_a_third_of_bare": results[f"{best}_relay_rate"]
        >= results["bare_relay_rate"] / 3,
        "p99_under_50ms_at_1000": min(results["hub_latency"]["p99_ms"],
                                      results["hub_multi_latency"]["p99_ms"]) < 50,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    for label in ("bare", "hub", "hub_multi"):
        lat = results[f"{label}_latency"]
        print(f"{label:9s} relay {results[f'{label}_relay_rate']:7.0f} msg/s   p50 "
              f"{lat['p50_ms']:6.1f} ms  p99 {lat['p99_ms']:6.1f} ms at {args.rate:.0f} msg/s")
    print(f"ratio to bare: hub {results['ratio_hub_to_bare']:.2f}, "
          f"hub x{args.processes} {results['ratio_hub_multi_to_bare']:.2f}")

if __name__ == "__main__":
    main()
