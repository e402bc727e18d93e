"""``lienthong postal ...``: the postal adapter's own commands."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from hub.adapters import AdapterContext

app = typer.Typer(help="Postal service: tracking by polling, and the waybill pool.",
                  no_args_is_help=True)
pool_app = typer.Typer(help="The pool of pre-allocated waybill numbers.", no_args_is_help=True)
app.add_typer(pool_app, name="pool")


@app.command()
def poll(
    orders: list[str] = typer.Argument(  # noqa: B008 - typer's declaration style
        None, help="Order numbers (dossier codes) to poll; default: every open order."
    ),
) -> None:
    """Poll tracking of open orders and publish vn.gov.postal.tracking-updated for each change
    of state. The webhook does the same as the postal service pushes; polling catches what a
    push missed."""
    from adapters.postal import tracking
    from hub.runtime import adapter_session
    from hub.settings import load

    async def go() -> str:
        async with adapter_session(load(), "postal") as (ctx, publish):
            return (await tracking.run(ctx, publish, orders or None)).summary()

    typer.echo(asyncio.run(go()))


@contextmanager
def _ctx() -> Iterator[AdapterContext]:
    from hub.adapters import context_for
    from hub.settings import load
    from hub.store import Store

    settings = load()
    with Store.open(settings.store_url) as store:
        yield context_for(settings, "postal", store=store)


@pool_app.command("add")
def pool_add(
    numbers: list[str] = typer.Argument(None, help="Waybill numbers."),  # noqa: B008
    file: Path | None = typer.Option(None, help="A file of waybill numbers."),  # noqa: B008
    first: str | None = typer.Option(None, help="First number of a range (S10, check digit)."),
    last: str | None = typer.Option(None, help="Last number of the range."),
    customer: str | None = typer.Option(None, help="Customer code (default: configured)."),
) -> None:
    """Add waybill numbers the postal service allocated to the hub."""
    from adapters.postal import admin

    with _ctx() as ctx:
        added = admin.pool_add(ctx, numbers=numbers or (), file=file, first=first, last=last,
                               customer_code=customer)
    typer.echo(f"{added}")


@pool_app.command("status")
def pool_status(customer: str | None = typer.Option(None, help="Customer code.")) -> None:
    """How many waybill numbers are free and used."""
    from adapters.postal import admin

    with _ctx() as ctx:
        typer.echo(f"{admin.pool_status(ctx, customer)}")
