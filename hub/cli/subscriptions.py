"""``lienthong subscriptions``: ministries' queues, their credentials, history replays, the
AsyncAPI contract and the fan-out that feeds them (hub.subscriptions)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from hub.errors import HubError
from hub.settings import Settings, load

app = typer.Typer(
    help="Ministries' subscriptions: add, list, show, remove, credentials, replay, asyncapi, "
    "serve (the fan-out alone; `lienthong worker` runs it too).",
    no_args_is_help=True,
)


_Types = Annotated[list[str], typer.Option("--type", help="An event type (repeatable).")]
_Agencies = Annotated[list[str] | None, typer.Option(
    "--agency", help="An agency code, or '*' (default: every agency).")]
_Procedures = Annotated[list[str] | None, typer.Option(
    "--procedure", help="A procedure code, or '*' (default: every procedure).")]
_Since = Annotated[datetime | None, typer.Option(
    "--since", help="From this date (ISO 8601; no zone: Asia/Ho_Chi_Minh).")]
_Output = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Write here (default: standard output).")]


def _fail(error: HubError) -> typer.Exit:
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def _store(settings: Settings):  # type: ignore[no-untyped-def]
    from hub.store import Store

    return Store.open(settings.store_url)


def _credentials_text(c: object) -> str:
    return (f"ministry {c.ministry}: RabbitMQ user {c.user}\n"  # type: ignore[attr-defined]
            f"password (shown once, not kept): {c.password}\n"  # type: ignore[attr-defined]
            f"queues it may read: {', '.join(c.queues)}\n"  # type: ignore[attr-defined]
            f"connect with: {c.amqp_url}")  # type: ignore[attr-defined]


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="The subscription's name (its queue: "
                                        "P.sub.NAME).")],
    ministry: Annotated[str, typer.Option("--ministry", help="The ministry's system id.")],
    event_types: _Types,
    agencies: _Agencies = None,
    procedures: _Procedures = None,
    projection: str | None = typer.Option(
        None, "--projection", help="Projection of personal data (default: the ministry's "
        "first in mappings/ministries.toml)."),
    no_credentials: bool = typer.Option(
        False, "--no-credentials", help="Do not create the ministry's user now."),
) -> None:
    """Add a subscription (checked against the ministries' access list) and declare its queue.
    A ministry without a user gets one: its password is printed once."""
    from hub.subscriptions import records, service

    settings = load()
    try:
        with _store(settings) as store:
            sub, actions = service.add(settings, store, name, ministry, list(event_types),
                                       list(agencies or []), list(procedures or []),
                                       projection)
            for action in actions:
                typer.echo(str(action))
            typer.echo(f"subscription {sub.name}: {', '.join(sub.patterns())} "
                       f"(projection {sub.projection})")
            if not no_credentials and len(records.all_(store, ministry)) == 1:
                from hub.broker.management import Management

                with Management.from_settings(settings) as mgmt:
                    exists = mgmt.user_exists(service.names_of(settings).user(ministry))
                if not exists:
                    typer.echo(_credentials_text(service.credentials(settings, store,
                                                                     ministry)))
    except HubError as exc:
        raise _fail(exc) from None


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="One JSON document.")) -> None:
    """Each subscription's queue: depth (ready), unacked, consumers, the age of its oldest
    message (ready or unacked), rates, dead letters,
    and what is to report (a backlog past subscription_alert_depth, no consumer for
    subscription_alert_idle_minutes). Exit status 3 when something is reported."""
    from hub.subscriptions.status import statuses

    settings = load()
    try:
        with _store(settings) as store:
            found = statuses(settings, store)
    except HubError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps([{
            "name": st.subscription.name, "ministry": st.subscription.ministry,
            "queue": st.queue, "exists": st.exists, "depth": st.depth,
            "consumers": st.consumers, "unacked": st.unacked,
            "oldest_age_seconds": st.oldest_age, "oldest_age_at_least": st.oldest_at_least,
            "rate_in": st.rate_in, "rate_out": st.rate_out, "dead": st.dead,
            "alerts": st.alerts} for st in found], indent=2))
    else:
        if not found:
            typer.echo("no subscriptions (lienthong subscriptions add)")
        for st in found:
            age = "-" if st.oldest_age is None else (
                f"{'>=' if st.oldest_at_least else ''}{st.oldest_age:.0f}s")
            typer.echo(f"{st.subscription.name:<24} {st.subscription.ministry:<34} "
                       f"depth {st.depth:>7}  unacked {st.unacked:>5}  "
                       f"consumers {st.consumers:>2}  oldest {age:>7}  "
                       f"in {st.rate_in:.1f}/s out {st.rate_out:.1f}/s  dead {st.dead}")
            for alert in st.alerts:
                typer.secho(f"    ALERT: {alert}", fg=typer.colors.RED)
    if any(st.alerts for st in found):
        raise typer.Exit(code=3)


@app.command()
def show(name: str) -> None:
    """A subscription: its ministry, types, agencies, procedures, projection, queues, bindings
    and its ministry's user."""
    from hub.subscriptions import records, service

    settings = load()
    try:
        with _store(settings) as store:
            sub = records.get(store, name)
    except HubError as exc:
        raise _fail(exc) from None
    sn = service.names_of(settings)
    typer.echo(f"subscription {sub.name}\n  ministry    {sub.ministry}\n"
               f"  types       {', '.join(sub.event_types)}\n"
               f"  agencies    {', '.join(sub.agencies)}\n"
               f"  procedures  {', '.join(sub.procedures)}\n"
               f"  projection  {sub.projection}\n  queue       {sn.queue(sub.name)}\n"
               f"  dead        {sn.dead(sub.name)}\n  user        {sn.user(sub.ministry)}\n"
               f"  patterns    {', '.join(sub.patterns())}")


@app.command()
def remove(name: str, force: bool = typer.Option(
        False, "--force", help="Delete the queues even if they hold messages.")) -> None:
    """Remove a subscription and its queues; a ministry left with none loses its user."""
    from hub.subscriptions import service

    settings = load()
    try:
        with _store(settings) as store:
            for action in service.remove(settings, store, name, force=force):
                typer.echo(str(action))
    except HubError as exc:
        raise _fail(exc) from None


@app.command()
def credentials(ministry: str, rotate: bool = typer.Option(
        False, "--rotate", help="Give the existing user a new password (its connections are "
        "closed).")) -> None:
    """Create the ministry's RabbitMQ user (read on its queues, nothing else) and print its
    password once; --rotate replaces the password."""
    from hub.subscriptions import service

    settings = load()
    try:
        with _store(settings) as store:
            typer.echo(_credentials_text(service.credentials(settings, store, ministry,
                                                             rotate=rotate)))
    except HubError as exc:
        raise _fail(exc) from None


@app.command()
def replay(
    which: str = typer.Argument(..., help="A subscription's name, or a ministry's system id "
                                "(all its subscriptions)."),
    since: _Since = None,
    offset: int | None = typer.Option(None, "--offset", help="From this offset of the stream."),
) -> None:
    """Copy history from the stream into the subscription's queue, projected and signed, with
    the original message ids."""
    from zoneinfo import ZoneInfo

    from hub.subscriptions import service
    from hub.subscriptions.fanout import hub_signer
    from hub.subscriptions.replay import replay as run

    settings = load()
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))
    try:
        with _store(settings) as store:
            subs = service.by_ministry_or_name(store, which)
            report = run(settings, subs, hub_signer(settings), since=since, offset=offset,
                         ledger=store.queue_ledger)
    except HubError as exc:
        raise _fail(exc) from None
    typer.echo(f"read {report.read} messages of the history (offsets {report.first_offset}"
               f"..{report.last_offset}); copied: "
               + ", ".join(f"{k} {v}" for k, v in report.copied.items()))
    if report.refused:
        typer.secho(f"not copied (signature or projection refused): {len(report.refused)}: "
                    f"{', '.join(report.refused[:10])}", fg=typer.colors.YELLOW, err=True)


@app.command()
def asyncapi(
    output: _Output = None,
    fmt: str = typer.Option("json", "--format", help="json or yaml."),
) -> None:
    """The AsyncAPI 3.0 document of the live configuration."""
    from hub.subscriptions.asyncapi import document, to_yaml

    settings = load()
    try:
        with _store(settings) as store:
            doc = document(settings, store)
    except HubError as exc:
        raise _fail(exc) from None
    text = to_yaml(doc) if fmt == "yaml" else json.dumps(doc, indent=2, ensure_ascii=False)
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
        typer.echo(f"wrote {output}")


@app.command()
def serve() -> None:
    """Run the fan-out alone: read the feed, send each subscription its projected, signed copy
    (every `lienthong worker` process runs one already; this one shares the feed with them).
    Answers /healthz, /readyz and /metrics on fanout_metrics_port."""
    from hub.subscriptions.runner import run

    settings = load()
    try:
        asyncio.run(run(settings))
    except HubError as exc:
        raise _fail(exc) from None
