"""Operator functions behind ``lienthong postal pool ...`` (``hub.cli.adaptercommands``): load
waybill numbers into the pool (from a file, a range, or a list) and see how many are left."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from adapters.postal import pool
from adapters.postal.runtime import PostalRuntime
from hub.adapters import AdapterContext
from hub.numberpool import PoolCounts

_CUSTOMER = typer.Option("--customer", help="Customer code (default: configured).")


@dataclass(frozen=True)
class PoolAdded:
    customer_code: str
    offered: int
    added: int  # the others were already in the pool
    counts: PoolCounts


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
) -> PoolAdded:
    """Add waybill numbers the postal service allocated to the hub, to the pool of
    ``customer_code`` (the configured one by default)."""
    rt = runtime or PostalRuntime.from_context(ctx)
    customer = customer_code or rt.cfg.customer_code
    wanted = [pool.check_waybill(n) for n in numbers or ()]
    if file is not None:
        wanted += pool.read_file(file)
    if first is not None or last is not None:
        wanted += pool.expand_range(first or "", last or first or "")
    added = rt.pool.add(customer, wanted, rt.clock())
    return PoolAdded(customer, len(wanted), added, rt.pool.counts(customer))


def pool_status(
    ctx: AdapterContext, customer_code: Annotated[str | None, _CUSTOMER] = None, *,
    runtime: PostalRuntime | None = None
) -> PoolCounts:
    """How many waybill numbers are free and used."""
    rt = runtime or PostalRuntime.from_context(ctx)
    return rt.pool.counts(customer_code or rt.cfg.customer_code)
