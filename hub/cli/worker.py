"""``lienthong worker``: run adapter workers, each consuming its system's work queue."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal

import typer

from hub.errors import ConfigError, HubError


def _run(adapters: list[str] | None, verbose: bool) -> None:
    from hub import runtime
    from hub.recorder import TIMELINE
    from hub.settings import load
    from hub.store import Store

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    settings = load()
    try:
        store = Store.open(settings.store_url)
        try:
            skipped: list[tuple[str, ConfigError]] = []
            workers = runtime.build_workers(settings, adapters, store=store, skipped=skipped)
            for name, error in skipped:
                typer.echo(f"warning: adapter {name} not started: {error.message}; its "
                           f"messages wait in its queue until it runs (`lienthong worker "
                           f"{name}` once configured)", err=True)
            if not [w for w in workers if w.spec.name != TIMELINE]:
                raise ConfigError("no adapter could start; see the warnings above",
                                  field="adapter")
            typer.echo("running " + ", ".join(w.spec.name for w in workers) + " (Ctrl-C stops)")
            asyncio.run(runtime.run_until_signalled(workers))
        finally:
            store.close()
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


def register(app: typer.Typer) -> None:
    @app.command()
    def worker(
        adapters: list[str] = typer.Argument(  # noqa: B008 - typer's declaration style
            None, help="Adapters to run (default: every installed adapter)."
        ),
        processes: int = typer.Option(
            1, "--processes", "-p", min=1,
            help="Worker processes sharing the queues. Safe for every destination: ordered "
            "ones have a single active consumer, the others share the load (a relay is "
            "CPU-bound: one process per core).",
        ),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level."),
    ) -> None:
        """Consume the work queues of the named adapters and deliver to their systems, until
        interrupted (Ctrl-C stops cleanly: in-flight messages finish and are acked)."""
        try:
            if processes == 1:
                _run(adapters or None, verbose)
                return
            children = [
                multiprocessing.Process(target=_run, args=(adapters or None, verbose))
                for _ in range(processes)
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
