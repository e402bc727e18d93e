"""An operator's commands for a pool of numbers a system pre-allocated (``hub.numberpool``), as
``AdapterSpec.extra["admin"]`` declares them (``hub.cli.adaptercommands``): add numbers given
one by one, in a file or as a range (``hub.numberranges``), and count what is free and used.
An adapter names its numbers and where its pool, its default owner and its clock are; the
command line is the same for every pool."""

# No ``from __future__ import annotations`` here: the commands' options are made per adapter,
# and typer reads them from the annotations (hub.cli.adaptercommands resolves them with
# get_type_hints), which must be the objects themselves, not names of this closure's locals.

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from hub.adapters import AdapterContext
from hub.numberpool import NumberPool, PoolCounts
from hub.numberranges import Loaded, Numbers, load


@dataclass(frozen=True)
class PoolAt:
    """An adapter's pool as its commands reach it: the pool, the owner it loads by default,
    and the adapter's clock."""

    pool: NumberPool
    owner: str
    clock: Callable[[], datetime]


def pool_commands(
    series: Numbers, pool_of: Callable[[AdapterContext, Any], PoolAt], *, system: str,
    owner_option: str, owner_help: str, first_help: str,
) -> tuple[Callable[..., Loaded], Callable[..., PoolCounts]]:
    """``pool add`` and ``pool status`` of ``system``'s pool of ``series``; ``pool_of`` reaches
    the pool from the context (or from a runtime a test gives, the commands' last parameter)."""
    what = series.what
    owner_given = typer.Option(owner_option, help=owner_help)

    def pool_add(
        ctx: AdapterContext, *,
        numbers: Annotated[list[str] | None, typer.Argument(
            help=f"{what.capitalize()} numbers.", show_default=False)] = None,
        file: Annotated[Path | None, typer.Option(help=f"A file of {what} numbers.")] = None,
        first: Annotated[str | None, typer.Option(help=first_help)] = None,
        last: Annotated[str | None, typer.Option(help="Last number of the range.")] = None,
        owner: Annotated[str | None, owner_given] = None,
        runtime: Any = None,
    ) -> Loaded:
        at = pool_of(ctx, runtime)
        return load(at.pool, owner or at.owner, series.given(numbers or (), file, first, last),
                    at.clock())

    def pool_status(ctx: AdapterContext, owner: Annotated[str | None, owner_given] = None, *,
                    runtime: Any = None) -> PoolCounts:
        at = pool_of(ctx, runtime)
        return at.pool.counts(owner or at.owner)

    pool_add.__doc__ = (f"Add {what} numbers {system} allocated to the hub, to the pool of an "
                        "owner (the configured one by default).")
    pool_status.__doc__ = f"How many {what} numbers are free and used."
    return pool_add, pool_status
