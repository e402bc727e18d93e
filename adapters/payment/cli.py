"""``lienthong payment ...``: the payment adapter's own commands."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

app = typer.Typer(help="Payment gateway: reconciliation of payments left pending, and the "
                  "gateway's reports parked for an operator.", no_args_is_help=True)


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
            return (await job.run(ctx, publish)).summary()

    typer.echo(asyncio.run(go()))


@app.command()
def mismatches(
    reference: Annotated[str | None, typer.Option(help="only the reports of this payment")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, latest first")] = 100,
) -> None:
    """The gateway's reports the ledger did not apply (an amount, currency, partner or
    reference other than the payment's; a payment already paid; a payment whose INIT the
    gateway refused), one JSON object a line, most recently seen first: the reason, the
    gateway's message as received, what the ledger expected, the payment's state before and
    after, how many times it came. None of them was published."""
    from adapters.payment.runtime import PaymentRuntime
    from hub.adapters import context_for
    from hub.settings import load
    from hub.store import Store

    settings = load()
    with Store.open(settings.store_url, deferred_log=False) as store:
        rt = PaymentRuntime.from_context(context_for(settings, "payment", store=store))
        for parked in rt.ledger.parked_reports(reference=reference, limit=limit):
            typer.echo(json.dumps(parked.to_dict(), ensure_ascii=False, default=str))
