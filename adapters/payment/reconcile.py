"""Reconciliation (docs/adapters/payment.md): payments still pending some time after INIT are
asked for with QUERY, and a reply is a report like a callback, judged by the same table.
``reconcile_report`` is the pass (``hub.stateful.open_pass``), ``run`` publishes what it found."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from adapters.payment import ledger, translate
from adapters.payment.callback import settle
from adapters.payment.client import PaymentClient
from adapters.payment.runtime import PaymentRuntime
from hub.adapters import AdapterContext
from hub.envelope import Envelope
from hub.reports import content_digest
from hub.stateful import Sweep, open_pass, run_job

OUTCOMES = ("checked", "paid", "failed", "mismatched", "still_pending")


async def reconcile_report(ctx: AdapterContext, now: datetime | None = None, *,
                           runtime: PaymentRuntime | None = None) -> Sweep:
    rt = runtime or PaymentRuntime.from_context(ctx)
    at = now or rt.clock()
    gateway = PaymentClient(rt)
    report = Sweep.of(*OUTCOMES)

    async def check(payment: ledger.Transaction) -> None:
        report.count("checked")
        reply = await gateway.call("query", translate.query_message(
            payment.reference, rt.cfg, rt.mapping, rt.cfg.secret(), at))
        outcome = translate.query_outcome(reply, rt.mapping)
        if outcome == ledger.PENDING:
            await asyncio.to_thread(rt.ledger.checked, payment.reference, at)
            report.count("still_pending")
            return
        field = rt.mapping.fields.reply.transaction_state
        said = ledger.reported(reply, paid=outcome == ledger.PAID, digest=content_digest(reply),
                               source="query", outcome_field=field)
        # The same facts as a callback's, checked the same way: a QUERY that says paid for
        # another amount parks the payment as a mismatch, it does not pay it.
        settled = await asyncio.to_thread(settle, rt, payment, said,
                                          f"{field}={reply.get(field)}", at, emitted=False)
        report.count("mismatched" if settled.parked is not None
                     else "paid" if said.paid else "failed")

    due = await asyncio.to_thread(rt.ledger.pending, rt.cfg.partner_code,
                                  at - timedelta(minutes=rt.cfg.reconcile_after_minutes),
                                  rt.cfg.reconcile_batch)
    return await open_pass(report, due, check, lambda p: f"reconciliation of payment {p.reference}",
                           lambda: rt.ledger.unemitted(rt.cfg.partner_code, rt.cfg.reconcile_batch),
                           gateway)


async def run(ctx: AdapterContext, publish: Callable[[Envelope], Awaitable[None]],
              now: datetime | None = None, *, runtime: PaymentRuntime | None = None) -> Sweep:
    """QUERY the gateway about payments still pending after `reconcile_after_minutes`, and
    publish vn.gov.payment.completed for those now paid or failed (``publish`` resolves once
    the broker confirmed), then mark them emitted. Run it from cron; it is safe to run twice
    (events are derived from the transaction, so repeats are absorbed)."""
    rt = runtime or PaymentRuntime.from_context(ctx)
    return await run_job(await reconcile_report(ctx, now, runtime=rt), publish,
                         lambda ids: rt.ledger.mark_emitted(ids, rt.clock()))
