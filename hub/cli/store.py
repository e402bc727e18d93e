"""``lienthong store``: upkeep of the hub's database: ``prune`` forgets what no longer needs
remembering (processed message ids, Idempotency-Keys, published outbox messages, the sequence
numbers adapters' events took)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

import typer
from pydantic import ValidationError

from hub import settings as hub_settings
from hub.errors import HubError
from hub.settings import Settings
from hub.store import Store

app = typer.Typer(no_args_is_help=True)


@app.callback()
def store() -> None:
    """The hub's database: prune what no longer needs remembering."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, option: str) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``7d`` or plain seconds."""
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise typer.BadParameter(
            f"{text!r} is not a positive duration; write it like 90s, 30m, 12h or 7d",
            param_hint=option)
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def processed_ids_window(settings: Settings) -> timedelta:
    """How long a processed id must be kept: a message can come back (redelivered, or through
    every retry tier) for as long as its signature is accepted inside the hub."""
    return timedelta(seconds=settings.queued_max_age + settings.clock_skew
                     + sum(settings.retry_tiers))


def idempotency_window(settings: Settings) -> timedelta:
    """The shortest an idempotency key may be kept: an entry point accepts a signed request
    for ``signature_max_age`` after its signing time, which may be up to ``clock_skew`` ahead of
    the hub's clock. Sent again inside that window, a request is recognised by its
    idempotency key, the one it names or the one it implies (REST ``request:<id>``, SOAP
    ``xmldsig:<digest>``; REST's replay cache is only per process): pruned sooner, an exact
    resend still inside the window would be taken for a new event."""
    return timedelta(seconds=settings.signature_max_age + settings.clock_skew)


def _settings() -> Settings:
    try:
        return hub_settings.load()
    except ValidationError as exc:
        typer.echo(f"error: the settings are invalid: {exc}", err=True)
        raise typer.Exit(2) from None


def _age(value: str | None, option: str, default: timedelta) -> timedelta:
    return default if value is None else parse_duration(value, option)


@app.command()
def prune(
    store_url: Annotated[str | None, typer.Option(
        "--store-url", show_default=False,
        help="Database URL (sqlite:///path or postgresql+psycopg://...); default: the "
             "settings' store_url.")] = None,
    processed_older_than: Annotated[str | None, typer.Option(
        "--processed-older-than", show_default=False,
        help="Forget processed message ids recorded longer ago than this (90s, 30m, 12h, "
             "7d), and the sequence numbers adapters' events took as long ago; default: the "
             "longest a message can come back (queued_max_age + clock_skew + the retry "
             "tiers). Shorter lets a late redelivery run twice.")] = None,
    idempotency_older_than: Annotated[str, typer.Option(
        "--idempotency-older-than",
        help="Forget Idempotency-Keys given longer ago than this; a client retrying a request "
             "after that gets a new message. At least the age window of signed requests "
             "(signature_max_age + clock_skew).")] = "7d",
    outbox_older_than: Annotated[str, typer.Option(
        "--outbox-older-than",
        help="Delete outbox messages published longer ago than this (unpublished ones are "
             "never deleted).")] = "7d",
) -> None:
    """Delete processed ids, Idempotency-Keys and published outbox messages older than the
    given ages, and print how many of each."""
    settings = _settings()
    processed_age = _age(processed_older_than, "--processed-older-than",
                         processed_ids_window(settings))
    idempotency_age = parse_duration(idempotency_older_than, "--idempotency-older-than")
    window = idempotency_window(settings).total_seconds()
    if idempotency_age.total_seconds() < window:
        raise typer.BadParameter(
            f"{idempotency_older_than!r} is shorter than the age window of signed requests, "
            f"{window:g}s (signature_max_age + clock_skew), inside which an exact resend is "
            f"recognised only by its idempotency key; give at least {window:g}s",
            param_hint="--idempotency-older-than")
    outbox_age = parse_duration(outbox_older_than, "--outbox-older-than")
    try:
        # No linker thread: pruning writes nothing to the message log.
        with Store.open(store_url or settings.store_url, deferred_log=False) as store:
            processed = store.processed.prune(processed_age)
            numbers = store.event_sequences_prune(processed_age)
            keys = store.idempotency_prune(idempotency_age)
            published = store.outbox_prune(outbox_age)
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"pruned {processed} processed ids (older than {processed_age}), {keys} "
               f"idempotency keys (older than {idempotency_age}), {published} published "
               f"outbox messages (older than {outbox_age}), {numbers} sequence numbers of "
               f"adapters' events (with the processed ids)")
