"""``lienthong console``: the operator console from the command line (hub.console.service):
list, show, replay (with a progress bar), edit, discard; and ``keeper``, the dead-letter keeper
on its own (``lienthong worker`` runs one beside the recorder)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from hub.errors import HubError

if TYPE_CHECKING:
    from hub.console.service import ConsoleService, Operator
    from hub.store import Store

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


# -- the service from the command line ----------------------------------------------------------
# The operator acting is named with --operator and proves it with the password (prompted, or
# LIENTHONG_OPERATOR_PASSWORD): the audit trail says who did what, from any door.

_OPERATOR = typer.Option(..., "--operator", "-u", envvar="LIENTHONG_OPERATOR",
                         help="The operator acting (lienthong operators add).")
_PASSWORD = typer.Option(None, "--password", envvar="LIENTHONG_OPERATOR_PASSWORD",
                         help="Prompted for when not given.")


def _open(operator: str, password: str | None) -> tuple[ConsoleService, Operator, Store]:
    from hub.console.accounts import Accounts
    from hub.console.app import build_service
    from hub.settings import load
    from hub.store import Store

    settings = load()
    store = Store.open(settings.store_url)
    try:
        secret = password or str(typer.prompt("password", hide_input=True))
        who = Accounts(store).authenticate(operator, secret)
        return build_service(settings, store), who, store
    except BaseException:
        store.close()
        raise


def _fail(exc: HubError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


@app.command("list")
def list_(operator: str = _OPERATOR, password: str | None = _PASSWORD,
          state: str = typer.Option("parked", help="parked, replayed, edited, discarded, all"),
          kind: str | None = typer.Option(None, help="retries exhausted, delivery limit, "
                                          "invalid signature, schema, unroutable, refused"),
          source: str | None = None, destination: str | None = None,
          type: str | None = None, agency: str | None = None,
          dossier: str | None = typer.Option(None, "--dossier"),
          older_than: float | None = typer.Option(None, help="minutes"),
          limit: int = 50, offset: int = 0,
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Dead letters, newest first, with the count per reason."""
    from hub.console.web import _filters, _summary

    try:
        service, _, store = _open(operator, password)
    except HubError as exc:
        raise _fail(exc) from None
    try:
        page = service.browse(_filters(state, kind, None, source, destination, type, agency,
                                       dossier, older_than), limit=limit, offset=offset)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({"items": [_summary(d) for d in page.items],
                               "total": page.total, "counts": page.counts},
                              ensure_ascii=False))
        return
    for d in page.items:
        typer.echo(f"{d.id}\t{d.parked_at:%Y-%m-%d %H:%M}\t{d.kind}\t{d.destination or '-'}\t"
                   f"{d.type or '-'}\t{d.dossier_code or '-'}\t{d.state}")
    typer.echo(f"{page.total} in all; " + ", ".join(f"{k}: {n}" for k, n in page.counts.items()))


@app.command()
def show(dead_letter_id: int, operator: str = _OPERATOR,
         password: str | None = _PASSWORD) -> None:
    """One dead letter as JSON: payload (masked unless the role sees personal data), headers,
    history, signature status, the dossier's timeline."""
    from hub.console.web import _summary

    try:
        service, who, store = _open(operator, password)
        try:
            ins = service.inspect(dead_letter_id, who)
        finally:
            store.close()
    except HubError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps({**_summary(ins.letter), "envelope": ins.envelope,
                           "masked": ins.masked, "history": ins.letter.history,
                           "signature": ins.signature, "timeline": ins.timeline,
                           "replays": ins.replays}, ensure_ascii=False, indent=2))


@app.command()
def replay(ids: list[int] = typer.Argument(None, help="Dead letters to replay; none: every "  # noqa: B008
                                           "one matching the filter options"),
           operator: str = _OPERATOR, password: str | None = _PASSWORD,
           to: str | None = typer.Option(None, "--to", help="Another destination."),
           why: str = typer.Option("", "--why"),
           kind: str | None = None, destination: str | None = None,
           source: str | None = None, type: str | None = None, agency: str | None = None,
           dossier: str | None = typer.Option(None, "--dossier"),
           older_than: float | None = typer.Option(None, help="minutes")) -> None:
    """Replay dead letters (at console_replay_rate a second), with a progress bar."""
    from rich.progress import Progress

    from hub.console.service import Filters

    try:
        service, who, store = _open(operator, password)
    except HubError as exc:
        raise _fail(exc) from None
    try:
        chosen = list(ids or []) or service.matching_ids(Filters(
            kind=kind, destination=destination, source=source, type=type, agency=agency,
            dossier_code=dossier, older_than_minutes=older_than))
        with Progress(transient=False) as progress:
            task = progress.add_task("replaying", total=len(chosen))
            results = asyncio.run(service.replay_many(
                chosen, who, to=to, why=why,
                progress=lambda o: progress.advance(task)))
    except HubError as exc:
        raise _fail(exc) from None
    finally:
        store.close()
    for o in results:
        if not o.ok:
            typer.echo(f"{o.id}: {o.detail}", err=True)
    typer.echo(f"replayed {sum(o.ok for o in results)} of {len(results)}")
    if not all(o.ok for o in results):
        raise typer.Exit(1)


@app.command()
def edit(dead_letter_id: int,
         data_file: Path = typer.Option(..., "--data", help="JSON file: the corrected data."),  # noqa: B008
         why: str = typer.Option(..., "--why"),
         operator: str = _OPERATOR, password: str | None = _PASSWORD) -> None:
    """Resubmit a dead letter with corrected data, re-signed by the hub (the original kept)."""
    try:
        data = json.loads(data_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {data_file} cannot be read as JSON: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        service, who, store = _open(operator, password)
        try:
            out = asyncio.run(service.edit(dead_letter_id, who, data, why=why))
        finally:
            store.close()
    except HubError as exc:
        raise _fail(exc) from None
    typer.echo(f"{out.id}: {out.detail}")


@app.command()
def discard(dead_letter_id: int, why: str = typer.Option(..., "--why"),
            operator: str = _OPERATOR, password: str | None = _PASSWORD) -> None:
    """Discard a dead letter, saying why."""
    try:
        service, who, store = _open(operator, password)
        try:
            out = service.discard(dead_letter_id, who, why=why)
        finally:
            store.close()
    except HubError as exc:
        raise _fail(exc) from None
    typer.echo(f"{out.id}: {out.detail}")
