"""``lienthong console``: the operator console from the command line (hub.console.service):
list, show, replay (with a progress bar), edit, discard; and ``keeper``, the dead-letter keeper
on its own (``lienthong worker`` runs one beside the recorder)."""

from __future__ import annotations

import asyncio
import logging
import signal

import typer

from hub.errors import HubError

app = typer.Typer(help="Dead letters: keep, browse, inspect, replay, edit, discard.",
                  no_args_is_help=True)


@app.command()
def keeper(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Consume the dead, invalid and unroutable queues and keep each message in the store,
    until interrupted."""
    from hub.console.keeper import Keeper
    from hub.settings import load
    from hub.store import Store

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    logging.getLogger("hub").setLevel(logging.INFO)
    settings = load()

    async def run(store: Store) -> None:
        k = Keeper(settings, store)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        k.start()
        await stop.wait()
        await k.stop()

    try:
        with Store.open(settings.store_url) as store:
            typer.echo("keeping dead letters (Ctrl-C stops)")
            asyncio.run(run(store))
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
