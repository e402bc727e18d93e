"""Operator commands behind ``lienthong postal pool ...`` (``hub.poolcommands``): load waybill
numbers into the pool (from a file, a range, or a list) and see how many are left."""

from __future__ import annotations

from adapters.postal import pool
from adapters.postal.runtime import PostalRuntime
from hub.adapters import AdapterContext
from hub.poolcommands import PoolAt, pool_commands


def _pool(ctx: AdapterContext, runtime: PostalRuntime | None) -> PoolAt:
    rt = runtime or PostalRuntime.from_context(ctx)
    return PoolAt(rt.pool, rt.cfg.customer_code, rt.clock)


pool_add, pool_status = pool_commands(
    pool.WAYBILLS, _pool, system="the postal service", owner_option="--customer",
    owner_help="Customer code (default: configured).",
    first_help="First number of a range (S10, check digit).")
