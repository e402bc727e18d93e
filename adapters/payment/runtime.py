"""What the worker, the callback parser and the reconciliation job share, built once from the
``AdapterContext``: configuration, mapping, secret, the state tables' engine, a clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from adapters.payment import ledger, mapping
from adapters.payment.config import PaymentConfig
from adapters.payment.mapping import PaymentMapping
from hub import adaptertables
from hub.adapters import AdapterContext


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class PaymentRuntime:
    cfg: PaymentConfig
    mapping: PaymentMapping
    secret: str
    engine: Engine
    schemas_dir: Path
    hub_id: str
    clock: Callable[[], datetime] = field(default=_now)

    @classmethod
    def from_context(cls, ctx: AdapterContext) -> PaymentRuntime:
        cfg = PaymentConfig.from_mapping(ctx.config)
        settings = ctx.settings
        engine = adaptertables.engine_for(ctx.store, cfg.state_url, settings.data_dir, "payment.db")
        ledger.ensure_schema(engine)
        return cls(
            cfg=cfg,
            mapping=mapping.load(Path(settings.mappings_dir)),
            secret=cfg.secret(),
            engine=engine,
            schemas_dir=Path(settings.schemas_dir),
            hub_id=settings.hub_id,
        )
