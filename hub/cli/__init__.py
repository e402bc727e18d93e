"""``lienthong``: the hub's command line. Each command group lives in its own module and is
registered here; commands build what they need from ``Settings`` and call plain functions."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="lienthong",
    help="Liên Thông Hub: carries signed dossiers between Vietnam's one-stop systems.",
    no_args_is_help=True,
    add_completion=False,
)

# (module, group name); a module exposes ``app`` (a typer.Typer) or ``register(app)``.
_GROUPS = [
    ("hub.cli.keys", "keys"),
    ("hub.cli.topology", "topology"),
    ("hub.cli.log", "log"),
    ("hub.cli.serve", "serve"),
    ("hub.cli.clients", "clients"),
    ("hub.cli.worker", "worker"),
    ("hub.cli.store", "store"),
    ("hub.cli.outbox", "outbox"),
    ("hub.cli.console", "console"),
    ("hub.cli.operators", "operators"),
    ("hub.cli.audit", "audit"),
    ("hub.cli.subscriptions", "subscriptions"),
]


def _register() -> None:
    for module_name, group in _GROUPS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # group not built yet
        if hasattr(module, "register"):
            module.register(app)
        else:
            app.add_typer(module.app, name=group)


def _register_adapters() -> None:
    """Adapters may bring commands of their own, registered under the adapter's name: the jobs
    and admin functions they declare (``hub.cli.adaptercommands``), or ``extra["cli"]`` (a
    typer.Typer, or a function returning one) instead."""
    from hub.adapters import discover
    from hub.cli.adaptercommands import commands_of
    from hub.errors import ConfigError

    try:
        found = discover()
    except ConfigError as exc:
        # A broken adapter must not take the whole command line down with it.
        typer.echo(f"warning: {exc}", err=True)
        return
    for name, spec in sorted(found.items()):
        cli = spec.extra.get("cli")
        if cli is None:
            declared = commands_of(name, spec.description, spec.extra)
            if declared is not None:
                app.add_typer(declared, name=name)
            continue
        sub = cli() if callable(cli) and not isinstance(cli, typer.Typer) else cli
        if not isinstance(sub, typer.Typer):
            typer.echo(f"warning: adapter {name}'s extra['cli'] is {type(sub).__name__}, not a "
                       "typer.Typer (or a function returning one); its commands are left out",
                       err=True)
            continue
        app.add_typer(sub, name=name)


_register()
_register_adapters()


def main() -> None:
    app()


@app.command()
def version() -> None:
    """Print the hub's version."""
    from hub import __version__

    typer.echo(__version__)
