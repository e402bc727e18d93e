"""Building blocks for tests of the payment adapter: a sample payment request, its
envelope, and an AdapterContext pointed at a simulator with a quick call policy."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from state_fakes import MemoryLedger

from adapters.payment import events, reconcile, store
from adapters.payment.ledger import Ledger
from adapters.payment.runtime import PaymentRuntime
from hub.adapters import AdapterContext
from hub.envelope import Envelope
from hub.testing.adapters import quick_context

UPSTREAM = "VN:GOV:000.00.00.H56:igate"


def callbacks(book: Ledger, reference: str) -> list[dict[str, Any]]:
    """The callbacks a ledger noted for a payment, in order (the fake's notes, or the rows of
    payment_callbacks)."""
    if isinstance(book, MemoryLedger):
        return [n for n in book.notes if n["reference"] == reference]
    table = store.callbacks
    query = sa.select(table).where(table.c.reference == reference).order_by(table.c.id)
    with book.engine.connect() as conn:  # type: ignore[attr-defined]  # a SqlLedger
        return [dict(r) for r in conn.execute(query).mappings()]



def sample_request(**changes: Any) -> dict[str, Any]:
    """A canonical ``vn.gov.payment.requested`` body with a unique reference."""
    data: dict[str, Any] = {
        "dossier_code": "000.00.00.H56-250101-0001",
        "procedure_code": "2.002492",
        "agency_code": "000.00.00.H56",
        "reference": f"LT{uuid.uuid4().hex[:16].upper()}",
        "amount": "150000",
        "fees": [
            {"code": "LP01", "name": "Lệ phí cấp giấy", "amount": "100000", "kind": 2},
            {"code": "P01", "name": "Phí thẩm định", "amount": "50000", "kind": 1},
        ],
        "payer": {
            "identity_number": "001234567867",
            "name": "Nguyễn Văn A",
            "address": "1 Lê Lợi, Thanh Hóa",
        },
        "description": "",
    }
    data.update(changes)
    return data


def request_envelope(data: dict[str, Any] | None = None, **changes: Any) -> Envelope:
    body = data or sample_request(**changes)
    return Envelope.new(
        source=UPSTREAM,
        type=events.REQUESTED,
        subject=body["dossier_code"],
        data=body,
        agency=body["agency_code"],
        procedure=body["procedure_code"],
    )


def context(settings: Any, base_url: str, **kwargs: Any) -> AdapterContext:
    return quick_context(settings, "payment", base_url, **kwargs)


async def reconciled(ctx: AdapterContext, now: datetime | None = None) -> list[Envelope]:
    """The events a reconciliation pass has to publish, not published (nor marked emitted)."""
    return (await reconcile.reconcile_report(ctx, now)).events


def mark_emitted(ctx: AdapterContext, event_ids: Iterable[str]) -> int:
    """Confirm by hand that these events were published, as ``reconcile.run`` does."""
    rt = PaymentRuntime.from_context(ctx)
    return rt.ledger.mark_emitted(event_ids, rt.clock())
