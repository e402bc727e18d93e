"""``lienthong payment ...``: the payment adapter's own commands."""

from __future__ import annotations

import asyncio

import typer

app = typer.Typer(help="Payment gateway: reconciliation of payments left pending.",
                  no_args_is_help=True)


@app.command()
def reconcile() -> None:
    """QUERY the gateway about payments still pending after `reconcile_after_minutes`, and
    publish vn.gov.payment.completed for those now paid or failed. Run it from cron; it is
    safe to run twice (events are derived from the transaction, so repeats are absorbed)."""
    from adapters.payment import reconcile as job
    from hub.runtime import adapter_session
    from hub.settings import load

    async def go() -> str:
        async with adapter_session(load(), "payment") as (ctx, publish):
            return job.summary(await job.run(ctx, publish))

    typer.echo(asyncio.run(go()))
