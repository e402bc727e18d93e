"""Fan-out benchmark: what each extra subscription costs the hub.

The hub's fan-out (hub.subscriptions.fanout: the feed's consumer verifying each event,
projecting, serialising and signing one message per distinct projected body, publishing it
once to every queue that gets it (BCC) with confirms, acking after them) drains a feed of
signed 2 KB events with 0, 5 and 20 subscriptions that all match (0: the feed bound with '#',
no copy made); the bare relay of bench/relay.py (consume, publish, confirm, ack) runs on the
same messages in the same run, as the machine's baseline. Half of the subscriptions use one
projection and half another, removing different fields, so an event makes two messages and
two signatures whatever the count. See docs/performance.md#subscriptions-fan-out-issue-13.

    .venv/bin/python -m bench.fanout [--messages 3000] [--counts 0,5,20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pika

from bench.relay import declare, delete, fill, make_keys, message, signer, timed_relay
from hub.broker import declare as broker_declare
from hub.broker.names import Names
from hub.broker.topology import Topology
from hub.settings import Settings
from hub.store import Store
from hub.subscriptions import records, topology
from hub.subscriptions.fanout import Fanout, consumer
from hub.subscriptions.model import Subscription, SubscriptionNames

MINISTRY = "VN:GOV:000.00.00.G12:bench"


def write_access(data_dir: Path) -> tuple[Path, Path]:
    projections = data_dir / "projections"
    projections.mkdir(exist_ok=True)
    (projections / "a.toml").write_text("[keep]\n")
    (projections / "b.toml").write_text('[keep]\n"vn.gov.dossier.status-changed" = ["officer"]\n')
    ministries = data_dir / "ministries.toml"
    ministries.write_text(
        '[personal_data]\n"vn.gov.dossier.status-changed" = ["officer"]\n\n'
        f'[[ministries]]\nsystem_id = "{MINISTRY}"\nallowed_types = ["*"]\n'
        'allowed_agencies = ["*"]\nprojections = ["a", "b"]\n')
    return ministries, projections


async def drain(settings: Settings, store: Store, n: int) -> float:
    handler = Fanout(settings, store, signer(settings.data_dir, settings.hub_id, relay=True))
    feed = consumer(settings, store, handler)
    t0 = time.perf_counter()
    feed.start()
    while feed.stats.handled < n:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - t0
    await feed.stop()
    return n / elapsed


def fanout_run(base: Settings, count: int, n: int, size: int) -> dict[str, Any]:
    settings = base.model_copy(update={"name_prefix": f"ltbench{uuid.uuid4().hex[:6]}",
                                       "store_url": f"sqlite:///{base.data_dir}/"
                                                    f"{uuid.uuid4().hex[:6]}.db"})
    names = Names(settings.name_prefix)
    sn = SubscriptionNames(names)
    empty = settings.data_dir / "topology.toml"
    empty.write_text("")
    topo = Topology.from_settings(settings, [], topology_file=empty)
    broker_declare.apply(topo, settings.amqp_url)
    store = Store.open(settings.store_url)
    subs = [records.add(store, Subscription.new(f"s{i}", MINISTRY,
                                                ["vn.gov.dossier.status-changed"], [], [],
                                                "ab"[i % 2]))
            for i in range(count)]
    topology.apply(settings, subs)
    conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    if count == 0:
        conn.channel().queue_bind(sn.feed, names.events, "#")
    sig = signer(settings.data_dir, "VN:GOV:000.00.00.H56:igate")
    asyncio.run(fill(settings, sn.feed, [message(sig, size, i + 1) for i in range(n)]))
    rate = asyncio.run(drain(settings, store, n))
    ch = conn.channel()
    for q in [sn.feed, sn.history, *(x for s in subs for x in (sn.queue(s.name),
                                                             sn.dead(s.name)))]:
        ch.queue_delete(q)
    for q in topo.queues:
        ch.queue_delete(q.name)
    conn.close()
    store.close()
    return {"subscriptions": count, "messages_per_s": round(rate),
            "copies_per_s": round(rate * count)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--counts", default="0,5,20")
    ap.add_argument("--amqp-url", default=os.environ.get(
        "LIENTHONG_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    ap.add_argument("--out", type=Path, default=Path("bench/results/fanout.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        make_keys(data_dir)
        ministries, projections = write_access(data_dir)
        base = Settings(data_dir=data_dir, amqp_url=args.amqp_url, ministries_file=ministries,
                        projections_dir=projections, prefetch=500)
        src, dst = f"ltbench.src.{uuid.uuid4().hex[:6]}", f"ltbench.dst.{uuid.uuid4().hex[:6]}"
        declare(args.amqp_url, src, dst)
        sig = signer(data_dir, "VN:GOV:000.00.00.H56:igate")
        asyncio.run(fill(base, src, [message(sig, args.size, i + 1)
                                     for i in range(args.messages)]))
        bare = timed_relay("bare", args.amqp_url, data_dir, src, dst, args.messages)
        delete(args.amqp_url, src, dst)
        print(f"bare relay: {bare:,.0f} msg/s")
        runs = []
        for count in (int(c) for c in args.counts.split(",")):
            run = fanout_run(base, count, args.messages, args.size)
            run["vs_bare_relay"] = round(run["messages_per_s"] / bare, 3)
            runs.append(run)
            print(f"fan-out, {count:>2} subscriptions: {run['messages_per_s']:,} msg/s "
                  f"({run['copies_per_s']:,} copies/s; {run['vs_bare_relay']:.2f} of the bare "
                  "relay)")
    result = {"messages": args.messages, "size": args.size, "bare_relay_per_s": round(bare),
              "runs": runs, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
