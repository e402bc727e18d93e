"""``lienthong worker``: run adapter workers, each consuming its system's work queue, with a
health and metrics endpoint per process (hub.workerhealth)."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

from hub.errors import ConfigError, HubError

if TYPE_CHECKING:
    from hub.runtime import Worker
    from hub.settings import Settings
    from hub.store import Store


async def _serve(workers: list[Worker], store: Store, settings: Settings, index: int) -> None:
    from hub import circuits, runtime
    from hub.store.circuitboard import StoreCircuitBoard
    from hub.workerhealth import WorkerHealth, serving

    # The server calls no system: it shows the circuits this process reports to the store.
    board = StoreCircuitBoard(store.engine)
    if settings.worker_metrics_port == 0:
        async with circuits.reporting(board):
            await runtime.run_until_signalled(workers)
        return
    health = WorkerHealth([w.consumer for w in workers], store)
    # Listening before consuming: a port taken stops the worker before it takes anything.
    async with serving(health, settings.worker_metrics_host,
                       settings.worker_metrics_port + index), circuits.reporting(board):
        await runtime.run_until_signalled(workers)


def _event_loop(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed, as `lienthong serve` has, unless the settings say asyncio: its
    callbacks, timers and socket writes cost a draining worker less CPU per delivery than
    asyncio's own loop (docs/performance.md)."""
    if settings.worker_event_loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _run(adapters: list[str] | None, verbose: bool, index: int = 0,
         processes: int | None = None, fanout: bool = True,
         recorder: bool | None = None) -> None:
    from hub import runtime
    from hub.broker.heap import collect_young_every
    from hub.console.keeper import KEEPER
    from hub.recorder import TIMELINE
    from hub.settings import load
    from hub.store import Store
    from hub.subscriptions.fanout import FANOUT

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    # The hub's own INFO lines (each retry with its destination, tier and reason; the queues
    # consumed) are shown by default; the adapters' per-delivery lines and pika's with -v.
    logging.getLogger("hub").setLevel(logging.INFO)
    settings = load()
    try:
        names, recorder, recorder_only = _recorder_named(adapters, recorder)
        store = Store.open(settings.store_url)
        try:
            skipped: list[tuple[str, ConfigError]] = []
            # Children of --processes n each take their own partitions first (None: the
            # settings' worker_process of worker_processes, for processes started one by one).
            workers = runtime.build_workers(
                settings, names, store=store, skipped=skipped, keeper=True, fanout=fanout,
                recorder=recorder,
                process=(index, processes) if processes is not None else None)
            for name, error in skipped:
                if name == FANOUT:
                    typer.echo(f"warning: the subscriptions' fan-out not started: "
                               f"{error.message}; events for subscriptions wait in its feed",
                               err=True)
                    continue
                typer.echo(f"warning: adapter {name} not started: {error.message}; its "
                           f"messages wait in its queue until it runs (`lienthong worker "
                           f"{name}` once configured)", err=True)
            if not recorder_only and not [w for w in workers
                                          if w.spec.name not in (TIMELINE, KEEPER, FANOUT)]:
                raise ConfigError("no adapter could start; see the warnings above",
                                  field="adapter")
            typer.echo("running " + ", ".join(w.spec.name for w in workers) + " (Ctrl-C stops)")
            collect_young_every(settings.worker_gc_threshold)
            with asyncio.Runner(loop_factory=_event_loop(settings)) as runner:
                runner.run(_serve(workers, store, settings, index))
        finally:
            store.close()
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


def _recorder_named(adapters: list[str] | None, recorder: bool | None,
                    ) -> tuple[list[str] | None, bool | None, bool]:
    """(the adapters to run, whether to run the recorder, whether it runs alone): the
    recorder's name among the adapters (``lienthong worker timeline``) asks for it, alone or
    beside the adapters named with it. Otherwise None runs it when the topology enables its
    destination."""
    from hub.recorder import TIMELINE

    if not adapters or TIMELINE not in adapters:
        return adapters, recorder, False
    if recorder is False:
        raise ConfigError(
            f"{TIMELINE} names the timeline recorder, which --no-recorder leaves out; give one "
            "or the other", field="adapter")
    names = [a for a in adapters if a != TIMELINE]
    return names, True, not names


def register(app: typer.Typer) -> None:
    @app.command()
    def worker(
        adapters: list[str] = typer.Argument(  # noqa: B008 - typer's declaration style
            None, help="Adapters to run (default: every installed adapter); `timeline` is the "
            "timeline recorder (`lienthong worker timeline`: the recorder alone, with the "
            "keeper and the fan-out)."
        ),
        processes: int = typer.Option(
            1, "--processes", "-p", min=1,
            help="Worker processes sharing the queues. Safe for every destination: ordered "
            "ones have a single active consumer, the others share the load (a relay is "
            "CPU-bound: one process per core). Process i answers /healthz, /readyz and "
            "/metrics on worker_metrics_port + i.",
        ),
        fanout: bool = typer.Option(
            True, "--fanout/--no-fanout",
            help="Run the subscriptions' fan-out in each process (default; it shares the feed "
            "with every other process that runs it, `lienthong subscriptions serve` too).",
        ),
        recorder: bool | None = typer.Option(
            None, "--recorder/--no-recorder",
            help="Run the timeline recorder in each process. Default: when the topology file "
            "enables the timeline destination (the shipped one does). --no-recorder leaves it "
            "to processes of their own (`lienthong worker timeline`), so that a destination's "
            "worker spends its process on its deliveries: a process runs on one core.",
            show_default=False,
        ),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level."),
    ) -> None:
        """Consume the work queues of the named adapters and deliver to their systems, with the
        dead-letter keeper, the subscriptions' fan-out and the timeline recorder if enabled, until
        interrupted (Ctrl-C stops cleanly: in-flight messages finish and are acked). Each
        process answers /healthz, /readyz and /metrics on LIENTHONG_WORKER_METRICS_HOST and
        LIENTHONG_WORKER_METRICS_PORT (default 127.0.0.1:9180; 0: none)."""
        try:
            if processes == 1:
                _run(adapters or None, verbose, fanout=fanout, recorder=recorder)
                return
            children = [
                multiprocessing.Process(
                    target=_run,
                    args=(adapters or None, verbose, i, processes, fanout, recorder))
                for i in range(processes)
            ]
            for child in children:
                child.start()
            # An INT or TERM sent to this process is passed on as INT: each child then stops
            # cleanly (in-flight messages finish and are acked).
            def forward(signum: int, frame: object) -> None:
                for child in children:
                    if child.pid is not None and child.is_alive():
                        os.kill(child.pid, signal.SIGINT)

            signal.signal(signal.SIGINT, forward)
            signal.signal(signal.SIGTERM, forward)
            for child in children:
                child.join()
            failed = [c.exitcode for c in children if c.exitcode != 0]
            if failed:
                raise typer.Exit(1)
        except HubError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
