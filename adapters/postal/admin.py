"""Operator functions behind ``lienthong postal pool ...`` (``hub.cli.adaptercommands``): load
waybill numbers into the pool (from a file, a range, or a list) and see how many are left."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adapters.postal import pool
from adapters.postal.runtime import PostalRuntime
from hub.adapters import AdapterContext
from hub.numberpool import PoolCounts
from hub.numberranges import Loaded, load

_CUSTOMER = typer.Option("--customer", help="Customer code (default: configured).")


def pool_add(
    ctx: AdapterContext,
    *,
    numbers: Annotated[list[str] | None, typer.Argument(help="Waybill numbers.",
                                                        show_default=False)] = None,
    file: Annotated[Path | None, typer.Option(help="A file of waybill numbers.")] = None,
    first: Annotated[str | None, typer.Option(
        help="First number of a range (S10, check digit).")] = None,
    last: Annotated[str | None, typer.Option(help="Last number of the range.")] = None,
    customer_code: Annotated[str | None, _CUSTOMER] = None,
    runtime: PostalRuntime | None = None,
) -> Loaded:
    """Add waybill numbers the postal service allocated to the hub, to the pool of
    ``customer_code`` (the configured one by default)."""
    rt = runtime or PostalRuntime.from_context(ctx)
    return load(rt.pool, customer_code or rt.cfg.customer_code,
                pool.WAYBILLS.given(numbers or (), file, first, last), rt.clock())


def pool_status(
    ctx: AdapterContext, customer_code: Annotated[str | None, _CUSTOMER] = None, *,
    runtime: PostalRuntime | None = None
) -> PoolCounts:
    """How many waybill numbers are free and used."""
    rt = runtime or PostalRuntime.from_context(ctx)
    return rt.pool.counts(customer_code or rt.cfg.customer_code)
