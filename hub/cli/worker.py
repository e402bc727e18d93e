"""``lienthong worker``: run adapter workers, each consuming its system's work queue."""

from __future__ import annotations

import asyncio
import logging

import typer

from hub.errors import HubError


def register(app: typer.Typer) -> None:
    @app.command()
    def worker(
        adapters: list[str] = typer.Argument(  # noqa: B008 - typer's declaration style
            None, help="Adapters to run (default: every installed adapter)."
        ),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level."),
    ) -> None:
        """Consume the work queues of the named adapters and deliver to their systems, until
        interrupted (Ctrl-C stops cleanly: in-flight messages finish and are acked)."""
        from hub import runtime
        from hub.settings import load
        from hub.store import Store

        logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
        settings = load()
        try:
            store = Store.open(settings.store_url)
            workers = runtime.build_workers(settings, adapters or None, store=store)
            typer.echo("running " + ", ".join(w.spec.name for w in workers) + " (Ctrl-C stops)")
            asyncio.run(runtime.run_until_signalled(workers))
        except HubError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        finally:
            if "store" in locals():
                store.close()
