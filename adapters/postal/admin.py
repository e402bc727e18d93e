"""Operator functions behind ``lienthong postal pool ...``: load waybill numbers into the pool
(from a file, a range, or a list) and see how many are left."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from adapters.postal import pool
from adapters.postal.runtime import PostalRuntime
from hub.adapters import AdapterContext
from hub.numberpool import PoolCounts


@dataclass(frozen=True)
class PoolAdded:
    customer_code: str
    offered: int
    added: int  # the others were already in the pool
    counts: PoolCounts


def pool_add(
    ctx: AdapterContext,
    *,
    numbers: Iterable[str] = (),
    file: Path | None = None,
    first: str | None = None,
    last: str | None = None,
    customer_code: str | None = None,
    runtime: PostalRuntime | None = None,
) -> PoolAdded:
    """Add waybill numbers to the pool of ``customer_code`` (the configured one by default)."""
    rt = runtime or PostalRuntime.from_context(ctx)
    customer = customer_code or rt.cfg.customer_code
    wanted = [pool.check_waybill(n) for n in numbers]
    if file is not None:
        wanted += pool.read_file(file)
    if first is not None or last is not None:
        wanted += pool.expand_range(first or "", last or first or "")
    added = rt.pool.add(customer, wanted, rt.clock())
    return PoolAdded(customer, len(wanted), added, rt.pool.counts(customer))


def pool_status(
    ctx: AdapterContext, customer_code: str | None = None, *, runtime: PostalRuntime | None = None
) -> PoolCounts:
    rt = runtime or PostalRuntime.from_context(ctx)
    return rt.pool.counts(customer_code or rt.cfg.customer_code)
