"""``lienthong audit``: the operators' audit trail (hub.store.operators): export it as JSON
lines, verify its hash chain."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

app = typer.Typer(help="The operators' audit trail: export, verify.", no_args_is_help=True)


@app.command()
def export(output: Path | None = typer.Option(  # noqa: B008 - typer's declaration style
        None, "--output", "-o", help="File to write (default: standard output).")) -> None:
    """Every entry, oldest first, one JSON object a line, with its hashes (verifiable
    elsewhere: row_hash = sha256(prev_hash + newline + canonical JSON of the entry))."""
    from hub.settings import load
    from hub.store import Store
    from hub.store import operators as ops

    settings = load()
    out = output.open("w", encoding="utf-8") if output else sys.stdout
    try:
        with Store.open(settings.store_url) as store, store.engine.connect() as conn:
            for entry in ops.iter_audit(conn):
                out.write(json.dumps(entry.to_json(), ensure_ascii=False) + "\n")
    finally:
        if output:
            out.close()


@app.command()
def verify() -> None:
    """Check the hash chain: exit 1 naming the first entry changed, removed or inserted."""
    from hub.settings import load
    from hub.store import Store
    from hub.store import operators as ops

    settings = load()
    with Store.open(settings.store_url) as store, store.engine.connect() as conn:
        report = ops.verify_audit(conn)
    if not report.ok:
        typer.echo(f"audit trail broken after {report.checked} entries: {report.problem}",
                   err=True)
        raise typer.Exit(1)
    typer.echo(f"audit trail intact: {report.checked} entries")
