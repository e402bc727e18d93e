"""``lienthong subscriptions serve``: the fan-out consumer, its status poll and its health and
metrics endpoint, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from hub.broker.metrics import REGISTRY
from hub.settings import Settings
from hub.store import Store
from hub.subscriptions.fanout import Fanout, consumer, hub_signer, poll_status
from hub.subscriptions.status import StatusCollector
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
    collector = StatusCollector(settings, store)
    REGISTRY.register(collector)
    try:
        fanout = Fanout(settings, store, hub_signer(settings))
        feed = consumer(settings, store, fanout)
        feed.start()
        await feed.wait_consuming()
        log.info("fan-out consuming %s for %d subscriptions", fanout.sn.feed,
                 len(fanout.subscriptions))
        poll = asyncio.create_task(poll_status(settings, store, stop))
        health = WorkerHealth([feed], store)
        async with contextlib.AsyncExitStack() as stack:
            if settings.fanout_metrics_port:
                await stack.enter_async_context(serving(
                    health, settings.worker_metrics_host, settings.fanout_metrics_port))
            await stop.wait()
        await feed.stop()
        await poll
    finally:
        REGISTRY.unregister(collector)
        store.close()
