"""``lienthong``: the hub's command line. Each command group lives in its own module and is
registered here; commands build what they need from ``Settings`` and call plain functions.

A group's module is imported when the group is called (or listed by ``--help``), not at every
start: the modules bring the store, the broker and the web stack, and importing all of them cost
every command, ``lienthong outbox status`` as much as ``lienthong serve``, over a second
before it did anything (see docs/performance.md#command-groups-imported-when-called).
Adapters' commands likewise: the adapters are discovered at start (their packages are light),
the modules of their jobs and admin functions imported when called."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

import typer
from typer import _click  # typer's own copy of click, which its groups are made of
from typer.core import TyperGroup

Command = _click.Command
Loader = Callable[[], Command | None]  # None: nothing to add (warned)

# Commands of their own: name -> module, whose ``register(app)`` adds it.
_COMMANDS = {"serve": "hub.cli.serve", "worker": "hub.cli.worker"}
# Groups: name -> module, whose ``app`` (a typer.Typer) is the group. Listed in this order,
# after the commands, as typer lists a group's own commands before its sub-groups.
_GROUPS = {
    "keys": "hub.cli.keys",
    "topology": "hub.cli.topology",
    "log": "hub.cli.log",
    "clients": "hub.cli.clients",
    "store": "hub.cli.store",
    "outbox": "hub.cli.outbox",
    "console": "hub.cli.console",
    "operators": "hub.cli.operators",
    "audit": "hub.cli.audit",
    "subscriptions": "hub.cli.subscriptions",
}


def _named(command: Command, name: str) -> Command:
    command.name = name
    return command


def _command_loader(name: str, module_name: str) -> Loader:
    def load() -> Command:
        own = typer.Typer(add_completion=False)
        importlib.import_module(module_name).register(own)
        return _named(typer.main.get_command(own), name)

    return load


def _group_loader(name: str, module_name: str) -> Loader:
    def load() -> Command:
        return _named(typer.main.get_group(importlib.import_module(module_name).app), name)

    return load


def _adapter_loaders() -> dict[str, Loader]:
    """Adapters may bring commands of their own, registered under the adapter's name: the jobs
    and admin functions they declare (``hub.cli.adaptercommands``), or ``extra["cli"]`` (a
    typer.Typer, or a function returning one) instead."""
    from hub.adapters import discover
    from hub.cli.adaptercommands import declares_commands
    from hub.errors import ConfigError

    try:
        found = discover()
    except ConfigError as exc:
        # A broken adapter must not take the whole command line down with it.
        typer.echo(f"warning: {exc}", err=True)
        return {}
    return {name: _adapter_loader(name, spec.description, spec.extra)
            for name, spec in sorted(found.items())
            if spec.extra.get("cli") is not None or declares_commands(spec.extra)}


def _adapter_loader(name: str, description: str, extra: Mapping[str, object]) -> Loader:
    def load() -> Command | None:
        from hub.cli.adaptercommands import commands_of

        cli = extra.get("cli")
        if cli is None:
            declared = commands_of(name, description, extra)
            assert declared is not None  # declares_commands said so
            return _named(typer.main.get_group(declared), name)
        sub = cli() if callable(cli) and not isinstance(cli, typer.Typer) else cli
        if not isinstance(sub, typer.Typer):
            typer.echo(f"warning: adapter {name}'s extra['cli'] is {type(sub).__name__}, not a "
                       "typer.Typer (or a function returning one); its commands are left out",
                       err=True)
            return None
        return _named(typer.main.get_group(sub), name)

    return load


class _Commands(MutableMapping[str, Command]):
    """The top group's commands, each built the first time it is looked up; listed commands
    first (``first``), then those built already, then the rest of ``loaders``."""

    def __init__(self, built: MutableMapping[str, Command], loaders: dict[str, Loader],
                 first: list[str]) -> None:
        self._built = built
        self._loaders = loaders
        self._order = [*first, *(n for n in built if n not in first),
                       *(n for n in loaders if n not in first and n not in built)]

    def __getitem__(self, name: str) -> Command:
        if name not in self._built and name in self._loaders:
            built = self._loaders.pop(name)()
            if built is None:
                self._order.remove(name)
                raise KeyError(name)
            self._built[name] = built
        return self._built[name]

    def __setitem__(self, name: str, command: Command) -> None:
        if name not in self._order:
            self._order.append(name)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._order:
            raise KeyError(name)
        self._order.remove(name)
        self._loaders.pop(name, None)
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)


class LazyGroup(TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        loaders = {name: _command_loader(name, module) for name, module in _COMMANDS.items()}
        loaders.update((name, _group_loader(name, module)) for name, module in _GROUPS.items())
        loaders.update((name, load) for name, load in _adapter_loaders().items()
                       if name not in loaders)
        self.commands = _Commands(self.commands, loaders, list(_COMMANDS))


app = typer.Typer(
    name="lienthong",
    help="Liên Thông Hub: carries signed dossiers between Vietnam's one-stop systems.",
    no_args_is_help=True,
    add_completion=False,
    cls=LazyGroup,
)


@app.callback()
def _top() -> None:
    # A typer app with one command of its own and no callback is that command, not a group:
    # the others are added to the group when called.
    pass


def main() -> None:
    app()


@app.command()
def version() -> None:
    """Print the hub's version."""
    from hub import __version__

    typer.echo(__version__)
