"""What the consumer's pipeline metrics cost a delivery, in the hub's relay (bench/relay.py's
handler: decode, verify, derive, sign, publish with confirms, ack): the CPU time of the relay
process per message with the metrics, and with them replaced by a null object, in rounds that
alternate the two in the same run. CPU time, not a rate: on the shared machine a rate says more
about the neighbours than about the code.

    .venv/bin/python bench/consumer_metrics.py [--messages 3000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import relay as rb

from hub.broker.consumer import Consumer
from hub.broker.messages import Outgoing
from hub.settings import Settings
from hub.signing import TrustStore, Verifier


class _Null:
    """ConsumerMetrics that observes nothing."""

    def observe(self, _: float) -> None:
        return None

    def count(self, _type: str | None, _outcome: str) -> None:
        return None


class NullMetrics:
    def __init__(self) -> None:
        self.stage = {s: _Null() for s in ("verify", "handle", "record", "confirm", "ack")}

    def count(self, _type: str | None, _outcome: str) -> None:
        return None


async def relay_cpu(settings: Settings, data_dir: Path, src: str, dst: str, n: int,
                    metrics: bool) -> float:
    """CPU seconds of this process per message while a consumer relays ``n`` from ``src``."""
    verifier = Verifier.from_settings(settings, TrustStore(data_dir / "trust"), queued=True)
    hub_signer = rb.signer(data_dir, rb.HUB, relay=True)
    handled = asyncio.Event()
    count = 0

    async def handler(delivery: Any) -> list[Outgoing]:
        nonlocal count
        env = delivery.envelope
        count += 1
        if count >= n:
            handled.set()
        return [Outgoing.signed(env.derive(source=rb.HUB, type=env.type, data=env.data),
                                hub_signer, "", dst)]

    consumer = Consumer(settings, src, handler, verifier=verifier, name="bench metrics")
    if not metrics:
        consumer.metrics = NullMetrics()  # type: ignore[assignment]
    started = time.process_time()
    consumer.start()
    await asyncio.wait_for(handled.wait(), 600)
    spent = time.process_time() - started
    await consumer.stop()
    return spent / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--amqp-url", default=os.environ.get(
        "LIENTHONG_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    ap.add_argument("--out", type=Path, default=Path("bench/results/consumer_metrics.json"))
    args = ap.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="ltbench-metrics-"))
    rb.make_keys(data_dir)
    settings = Settings(data_dir=data_dir, amqp_url=args.amqp_url, name_prefix="ltbench")
    sig = rb.signer(data_dir, rb.SOURCE)
    messages = [rb.message(sig, 2048, i) for i in range(args.messages)]
    run = uuid.uuid4().hex[:6]
    cpu: dict[str, list[float]] = {"with": [], "without": []}
    load_before = os.getloadavg()
    for r in range(args.rounds):
        for way in (("with", "without") if r % 2 == 0 else ("without", "with")):
            src, dst = f"ltbench.{run}.{r}.{way}.src", f"ltbench.{run}.{r}.{way}.dst"
            rb.declare(args.amqp_url, src, dst)
            asyncio.run(rb.fill(settings, src, messages))
            us = asyncio.run(relay_cpu(settings, data_dir, src, dst, args.messages,
                                       way == "with"))
            cpu[way].append(us)
            rb.delete(args.amqp_url, src, dst)
            print(f"round {r} {way:7} metrics: {us:.0f} µs CPU per message", file=sys.stderr)
    with_, without = statistics.median(cpu["with"]), statistics.median(cpu["without"])
    results = {"messages": args.messages, "rounds": args.rounds, "cpu_us": cpu,
               "median_with_us": with_, "median_without_us": without,
               "added_us": with_ - without, "load_before": load_before,
               "load_after": os.getloadavg()}
    print(f"CPU per message: with metrics {with_:.0f} µs, without {without:.0f} µs "
          f"(median of {args.rounds}; {with_ - without:+.0f} µs, "
          f"{(with_ - without) / without:+.1%}); load {load_before[0]:.0f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
