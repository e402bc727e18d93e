"""``lienthong outbox``: what the entry points accepted and the relay has not published yet."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated

import typer
from pydantic import ValidationError
from sqlalchemy import case, func, select

from hub import settings as hub_settings
from hub.errors import HubError
from hub.store import Store
from hub.store.engine import translate_errors
from hub.store.tables import outbox

app = typer.Typer(
    help="The outbox: accepted messages waiting to be published to the broker.",
    no_args_is_help=True,
)


@dataclass(frozen=True, slots=True)
class Backlog:
    pending: int  # accepted, not yet confirmed by the broker
    leased: int  # of those, taken by a relay now (its lease still running)
    oldest_created_at: datetime | None
    oldest_age_seconds: float | None

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        if self.oldest_created_at is not None:
            out["oldest_created_at"] = self.oldest_created_at.isoformat()
        return out


def backlog(store: Store, now: datetime | None = None) -> Backlog:
    """One read of the unpublished rows (the published_at index serves it)."""
    now = now or datetime.now(UTC)
    leased = func.coalesce(func.sum(case((outbox.c.claimed_until > now, 1), else_=0)), 0)
    query = (select(func.count(), leased, func.min(outbox.c.created_at))
             .where(outbox.c.published_at.is_(None)))
    with translate_errors("reading the outbox"), store.engine.connect() as conn:
        pending, taken, oldest = conn.execute(query).one()
    if oldest is not None and oldest.tzinfo is None:  # SQLite keeps naive UTC
        oldest = oldest.replace(tzinfo=UTC)
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else None
    return Backlog(int(pending), int(taken), oldest, age)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.1f}h"


@app.command()
def status(
    store_url: Annotated[str | None, typer.Option(
        "--store-url", show_default=False,
        help="Database URL (sqlite:///path or postgresql+psycopg://...); default: the "
             "settings' store_url (LIENTHONG_STORE_URL, or SQLite under data_dir).")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object: pending, leased, oldest_created_at, "
                       "oldest_age_seconds.")] = False,
) -> None:
    """Rows accepted and not yet published: how many, how many a relay holds now, and how old
    the oldest is. A backlog that grows, or an oldest row older than a few seconds, means the
    relay cannot publish (broker down, the hub's server stopped)."""
    try:
        url = store_url or hub_settings.load().store_url
        # No linker thread: this command writes nothing.
        with Store.open(url, deferred_log=False) as store:
            found = backlog(store)
            where = store.engine.url.render_as_string(hide_password=True)
    except ValidationError as exc:
        typer.echo(f"error: the settings are invalid: {exc}", err=True)
        raise typer.Exit(2) from None
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps({"store": where, **found.to_dict()}))
        return
    typer.echo(f"outbox of {where}")
    typer.echo(f"pending  {found.pending} (leased to a relay now: {found.leased})")
    if found.oldest_created_at is None or found.oldest_age_seconds is None:
        typer.echo("oldest   - (nothing waits)")
    else:
        typer.echo(f"oldest   {found.oldest_created_at.isoformat()} "
                   f"({_age(found.oldest_age_seconds)} ago)")
