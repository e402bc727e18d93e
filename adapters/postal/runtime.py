"""What the postal worker, the webhook parser and the tracking poller share, built once from the
``AdapterContext``: configuration, mapping, the service's contract, the orders and the pool."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from adapters.postal import mapping, store
from adapters.postal.config import NAME, PostalConfig
from adapters.postal.mapping import PostalMapping
from adapters.postal.orders import Orders
from hub.adapters import AdapterContext
from hub.numberpool import NumberPool
from hub.stateful import Runtime, shared, state_engine


@dataclass(kw_only=True)
class PostalRuntime(Runtime[PostalConfig, PostalMapping]):
    orders: Orders
    pool: NumberPool

    @classmethod
    def from_context(cls, ctx: AdapterContext) -> Self:
        cfg = PostalConfig.from_context(ctx)
        engine = state_engine(ctx, cfg.state_url, "postal.db", store.metadata)
        return cls(cfg=cfg, mapping=mapping.load(ctx.settings.mappings_dir),
                   orders=store.SqlOrders(engine), pool=store.SqlWaybills(engine),
                   **shared(ctx, NAME))
