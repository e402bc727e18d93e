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


_register()


def main() -> None:
    app()


@app.command()
def version() -> None:
    """Print the hub's version."""
    from hub import __version__

    typer.echo(__version__)
