"""What the payment worker, the callback parser and the reconciliation job share, built once from
the ``AdapterContext``: configuration, mapping, the gateway's contract, the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from adapters.payment import mapping, store
from adapters.payment.config import NAME, PaymentConfig
from adapters.payment.ledger import Ledger
from adapters.payment.mapping import PaymentMapping
from hub.adapters import AdapterContext
from hub.reports import parked_command
from hub.stateful import Runtime, shared, state_engine


@dataclass(kw_only=True)
class PaymentRuntime(Runtime[PaymentConfig, PaymentMapping]):
    ledger: Ledger

    @classmethod
    def from_context(cls, ctx: AdapterContext) -> Self:
        cfg = PaymentConfig.from_context(ctx)
        engine = state_engine(ctx, cfg.state_url, "payment.db", store.metadata)
        return cls(cfg=cfg, mapping=mapping.load(ctx.settings.mappings_dir),
                   ledger=store.SqlLedger(engine), **shared(ctx, NAME))


mismatches = parked_command(
    lambda ctx: PaymentRuntime.from_context(ctx).ledger,
    """The gateway's reports the ledger did not apply (an amount, currency, partner or
    reference other than the payment's; a payment already paid; a payment whose INIT the
    gateway refused), one JSON object a line, most recently seen first: the reason, the
    gateway's message as received, what the ledger expected, the payment's state before and
    after, how many times it came. None of them was published.""")
