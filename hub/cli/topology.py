"""``lienthong topology``: declare the broker topology, or show it."""

from __future__ import annotations

from pathlib import Path

import typer

from hub.broker import declare
from hub.broker.topology import Topology
from hub.errors import HubError
from hub.settings import Settings, load

app = typer.Typer(
    help="RabbitMQ topology: exchanges, work queues, retry tiers, dead letters.",
    no_args_is_help=True,
)

_FILE = typer.Option(
    None, "--file", "-f", help="Topology file (default: Settings.topology_file)."
)
_NO_ADAPTERS = typer.Option(
    False, "--no-adapters", help="Ignore installed adapters: only the topology file's destinations."
)


def _build(settings: Settings, topology_file: Path | None, no_adapters: bool) -> Topology:
    topology = Topology.from_settings(
        settings, [] if no_adapters else None, topology_file=topology_file
    )
    for problem in topology.problems:
        typer.secho(f"warning: {problem}", fg=typer.colors.YELLOW, err=True)
    return topology


def _fail(exc: HubError) -> typer.Exit:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


@app.command()
def apply(
    topology_file: Path | None = _FILE,
    no_adapters: bool = _NO_ADAPTERS,
) -> None:
    """Declare every exchange, queue and binding (idempotent) and print what was done."""
    settings = load()
    try:
        topology = _build(settings, topology_file, no_adapters)
        actions = declare.apply(topology, settings.broker_urls)
        # Ministries' subscriptions (the history stream, the fan-out's feed, each queue and
        # its user's permissions), from the store's rows.
        from hub.subscriptions.topology import apply_from_store

        actions += apply_from_store(settings)
    except declare.TopologyConflict as exc:
        for action in exc.actions:
            typer.echo(str(action))
        raise _fail(exc) from None
    except HubError as exc:
        raise _fail(exc) from None
    for action in actions:
        typer.echo(str(action))
    created = sum(1 for a in actions if a.outcome == "created")
    typer.echo(
        f"topology {settings.name_prefix!r}: {len(topology.destinations)} destinations, "
        f"{created} declarations created, {len(actions) - created} already in place"
    )


@app.command()
def show(
    live: bool = typer.Option(
        False, "--live", help="Also ask the broker for queue depths and consumers."
    ),
    topology_file: Path | None = _FILE,
    no_adapters: bool = _NO_ADAPTERS,
) -> None:
    """Print the intended topology (and, with --live, what the broker holds)."""
    settings = load()
    try:
        topology = _build(settings, topology_file, no_adapters)
    except HubError as exc:
        raise _fail(exc) from None
    typer.echo("destinations:")
    for dest in topology.destinations:
        order = "ordered" if dest.ordered else "unordered"
        about = f"  {dest.description}" if dest.description else ""
        typer.echo(f"  {dest.name}  ({order}, from {dest.origin}){about}")
        for pattern in dest.bindings:
            typer.echo(f"      {pattern}")
    typer.echo(f"retry tiers (s): {', '.join(f'{t:g}' for t in topology.retry_tiers)}")
    for line in topology.describe():
        typer.echo(line)
    if not live:
        return
    try:
        states = declare.inspect(topology, settings.broker_urls)
    except HubError as exc:
        raise _fail(exc) from None
    typer.echo("live:")
    width = max(len(s.name) for s in states)
    for state in states:
        if state.exists:
            counts = f"{state.messages:>9} ready  {state.consumers:>3} consumers"
            typer.echo(f"  {state.name:<{width}}  {counts}")
        else:
            typer.echo(f"  {state.name:<{width}}  absent (run `lienthong topology apply`)")
