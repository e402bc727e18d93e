"""Reconciliation: payments still pending some time after INIT (no callback came) are asked for
with QUERY; the paid and failed ones become ``vn.gov.payment.completed`` events, the pending
ones are left for the next run. A reply is a report like a callback and moves the payment by the
same table (``ledger.TRANSITIONS``): one whose facts (amount, partner, reference, currency) are
not the ledger's parks the payment as ``mismatch`` for an operator, with no event.

``reconcile(ctx)`` returns the events to publish: those settled in this run and any settled
earlier whose publication was never confirmed. After publishing them, call
``mark_emitted(ctx, ids)``; ``run(ctx, publish)`` does both. Event ids and bytes are stable, so
publishing one twice is absorbed downstream. Meant to run every few minutes
(``lienthong payment reconcile``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from adapters.payment import ledger, translate
from adapters.payment.callback import completed_envelope, warn_parked
from adapters.payment.client import PaymentClient
from adapters.payment.runtime import PaymentRuntime
from hub.adapters import AdapterContext
from hub.adaptertables import publish_then_mark
from hub.envelope import Envelope
from hub.errors import HubError

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    events: list[Envelope] = field(default_factory=list)
    checked: int = 0
    paid: int = 0
    failed: int = 0
    mismatched: int = 0  # parked for an operator: the gateway's facts are not the ledger's
    still_pending: int = 0
    errors: list[HubError] = field(default_factory=list)


async def reconcile_report(
    ctx: AdapterContext,
    now: datetime | None = None,
    *,
    runtime: PaymentRuntime | None = None,
    client: PaymentClient | None = None,
) -> ReconcileReport:
    rt = runtime or PaymentRuntime.from_context(ctx)
    now = now or rt.clock()
    own_client = client is None
    client = client or PaymentClient(rt.cfg, rt.mapping, rt.secret, rt.schemas_dir)
    report = ReconcileReport()
    try:
        due = await asyncio.to_thread(
            ledger.pending_before,
            rt.engine,
            rt.cfg.partner_code,
            now - rt.cfg.reconcile_after,
            rt.cfg.reconcile_batch,
        )
        for payment in due:
            report.checked += 1
            try:
                await _check(rt, client, payment, now, report)
            except HubError as exc:
                report.errors.append(exc)
                log.warning("reconciliation of payment %s failed: %s", payment.reference, exc)
                if exc.code in ("server.circuit_open", "system.unavailable", "system.timeout"):
                    break  # the gateway is not answering: the rest waits for the next run
        stored = await asyncio.to_thread(
            ledger.unemitted, rt.engine, rt.cfg.partner_code, rt.cfg.reconcile_batch
        )
        report.events = [Envelope.from_bytes(text.encode()) for text in stored]
    finally:
        if own_client:
            await client.aclose()
    return report


async def _check(
    rt: PaymentRuntime,
    client: PaymentClient,
    payment: ledger.Transaction,
    now: datetime,
    report: ReconcileReport,
) -> None:
    message = translate.query_message(payment.reference, rt.cfg, rt.mapping, rt.secret, now)
    reply = await client.query(message)
    outcome = translate.query_outcome(reply, rt.mapping)
    if outcome == ledger.PENDING:
        report.still_pending += 1
        await asyncio.to_thread(ledger.mark_checked, rt.engine, payment.reference, now)
        return
    paid = outcome == ledger.PAID
    raw_time = reply.get("ThoiGianGD")
    at = translate.parse_wire_time(raw_time, rt.mapping, "ThoiGianGD") if raw_time else now
    said = ledger.Report(
        reference=str(reply.get("MaThamChieu", "")),
        transaction_id=str(reply.get("MaGiaoDich") or ""),
        paid=paid,
        amount=None if reply.get("SoTien") in (None, "") else int(reply["SoTien"]),
        currency=None if reply.get("MaTienTe") is None else str(reply["MaTienTe"]),
        partner=str(reply.get("MaDoiTac", "")),
        facts=reply,
        digest=hashlib.sha256(
            json.dumps(reply, sort_keys=True, ensure_ascii=False).encode()).hexdigest(),
        source="query",
        outcome_field=rt.mapping.reply["transaction_state"],
    )
    candidate = None
    # The same facts as a callback's, checked the same way: a QUERY that says paid for another
    # amount parks the payment as a mismatch, it does not pay it.
    if ledger.disagreement(payment, said, rt.cfg.currency) is None:
        data = translate.completed(
            dossier_code=payment.dossier_code,
            reference=payment.reference,
            transaction_id=said.transaction_id,
            amount=payment.amount if said.amount is None else said.amount,
            paid=paid,
            error_code=None
            if paid
            else f"TrangThaiGD={reply.get(rt.mapping.reply['transaction_state'])}",
            at=at,
        )
        candidate = completed_envelope(rt, payment, data.model_dump(mode="json"), data.at)
    settled = await asyncio.to_thread(
        lambda: ledger.settle(
            rt.engine,
            said,
            event=candidate,
            currency=rt.cfg.currency,
            now=now,
            emitted=False,
        )
    )
    if settled.parked is not None:
        report.mismatched += 1
        warn_parked(said, settled.parked, settled.state)
    elif paid:
        report.paid += 1
    else:
        report.failed += 1


async def reconcile(
    ctx: AdapterContext, now: datetime | None = None, *, runtime: PaymentRuntime | None = None
) -> list[Envelope]:
    """The ``vn.gov.payment.completed`` events reconciliation has to publish."""
    return (await reconcile_report(ctx, now, runtime=runtime)).events


def mark_emitted(
    ctx: AdapterContext,
    event_ids: Iterable[str],
    *,
    runtime: PaymentRuntime | None = None,
    now: datetime | None = None,
) -> int:
    """Record that these events were published (confirmed): they are not returned again."""
    rt = runtime or PaymentRuntime.from_context(ctx)
    return ledger.mark_emitted(rt.engine, event_ids, now or rt.clock())


async def run(
    ctx: AdapterContext,
    publish: Callable[[Envelope], Awaitable[None]],
    now: datetime | None = None,
    *,
    runtime: PaymentRuntime | None = None,
) -> ReconcileReport:
    """One reconciliation pass: query, publish each event (``publish`` resolves once the broker
    confirmed it, e.g. sign + Publisher.publish), then mark them emitted."""
    rt = runtime or PaymentRuntime.from_context(ctx)
    report = await reconcile_report(ctx, now, runtime=rt)
    await publish_then_mark(
        report.events, publish, lambda ids: ledger.mark_emitted(rt.engine, ids, rt.clock())
    )
    return report


def summary(report: ReconcileReport) -> str:
    return json.dumps(
        {
            "checked": report.checked,
            "paid": report.paid,
            "failed": report.failed,
            "mismatched": report.mismatched,
            "still_pending": report.still_pending,
            "events": len(report.events),
            "errors": [e.to_dict() for e in report.errors],
        },
        ensure_ascii=False,
    )
