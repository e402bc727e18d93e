"""``lienthong subscriptions serve``: the fan-out alone (``lienthong worker`` runs one in each of
its processes already), with its health and metrics endpoint, until SIGINT or SIGTERM. For a
hub that wants the fan-out in processes of its own; it shares the feed with the workers'."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from hub.settings import Settings
from hub.store import Store
from hub.subscriptions.fanout import Fanout, consumer, hub_signer
from hub.workerhealth import WorkerHealth, serving

log = logging.getLogger(__name__)


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    if not stop.is_set():
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
    store = Store.open(settings.store_url)
    try:
        fanout = Fanout(settings, store, hub_signer(settings))
        feed = consumer(settings, store, fanout)
        feed.start()
        await feed.wait_consuming()
        log.info("fan-out consuming %s for %d subscriptions", fanout.sn.feed,
                 len(fanout.subscriptions))
        health = WorkerHealth([feed], store)
        async with contextlib.AsyncExitStack() as stack:
            if settings.fanout_metrics_port:
                await stack.enter_async_context(serving(
                    health, settings.worker_metrics_host, settings.fanout_metrics_port))
            await stop.wait()
        await feed.stop()
    finally:
        store.close()
