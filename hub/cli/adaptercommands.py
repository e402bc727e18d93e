"""``lienthong <adapter> ...``: an adapter's commands built from what its spec declares, so that an
adapter writes functions, not a command line. ``AdapterSpec.extra``:

- ``"jobs"``: ``{"poll": "module:function"}``, called as ``function(ctx, publish, ...)`` in an
  ``hub.runtime.adapter_session`` (events published signed and numbered); what it returns is
  printed by its ``summary()``.
- ``"admin"``: ``{"pool add": "module:function"}``, called as ``function(ctx, ...)`` on the
  hub's store; what it returns is printed. A space nests the command in a group (``pool``).

A function's command-line arguments and options are its parameters annotated for typer
(``Annotated[str, typer.Option(...)]``); the others (a test's runtime, a clock) keep their
defaults. Its docstring is the command's help. The functions' modules are imported when the
adapter's commands are called or listed (typer reads their signatures), not when the adapter is
discovered.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Protocol, get_args, get_origin, get_type_hints

import typer
from typer.models import ParameterInfo


class Summarised(Protocol):
    def summary(self) -> str: ...


def _resolve(target: str) -> Callable[..., Any]:
    module, _, attr = target.partition(":")
    found: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return found


def _declared(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    """The parameters of ``fn`` annotated for typer, with their types resolved (typer reads the
    wrapper's, which lives in another module's namespace)."""
    hints = get_type_hints(fn, include_extras=True)
    return [
        inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default,
                          annotation=hints[p.name])
        for p in inspect.signature(fn).parameters.values()
        if get_origin(hints.get(p.name)) is not None
        and any(isinstance(a, ParameterInfo) for a in get_args(hints[p.name])[1:])
    ]


def _admin(adapter: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> str:
    from hub.adapters import context_for
    from hub.settings import load
    from hub.store import Store

    settings = load()
    # A short-lived command chains its own log rows, as the other commands do, rather than
    # leaving them to a linker thread it would stop before long.
    with Store.open(settings.store_url, deferred_log=False) as store:
        result = fn(context_for(settings, adapter, store=store), **kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
    return f"{result}"


async def _awaited(result: Any) -> Any:
    return await result


def _job(adapter: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> str:
    from hub.runtime import adapter_session
    from hub.settings import load

    async def go() -> str:
        async with adapter_session(load(), adapter) as (ctx, publish):
            done: Summarised = await fn(ctx, publish, **kwargs)
            return done.summary()

    return asyncio.run(go())


Runner = Callable[[str, Callable[..., Any], dict[str, Any]], str]


def _command(adapter: str, target: str, run: Runner) -> Callable[..., None]:
    fn = _resolve(target)
    params = _declared(fn)

    def command(**kwargs: Any) -> None:
        from hub.errors import HubError

        try:
            typer.echo(run(adapter, fn, kwargs))
        except HubError as exc:
            # As the hub's own commands do: the reason, naming the field, not a traceback.
            typer.echo(f"error: {exc}", err=True)
            raise SystemExit(2) from None

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = inspect.cleandoc(fn.__doc__ or "")
    return command


def _group(parent: typer.Typer, path: list[str], groups: dict[str, typer.Typer]) -> typer.Typer:
    for depth in range(len(path)):
        key = " ".join(path[: depth + 1])
        if key not in groups:
            groups[key] = typer.Typer(no_args_is_help=True)
            (groups[" ".join(path[:depth])] if depth else parent).add_typer(
                groups[key], name=path[depth])
        parent = groups[key]
    return parent


def _table(value: object) -> Mapping[object, object]:
    return value if isinstance(value, Mapping) else {}


def _declarations(extra: Mapping[str, object]) -> list[tuple[object, object, Runner]]:
    return [(name, target, run) for key, run in (("jobs", _job), ("admin", _admin))
            for name, target in _table(extra.get(key)).items()]


def declares_commands(extra: Mapping[str, object]) -> bool:
    """Whether the spec's ``extra`` declares jobs or admin functions (nothing imported)."""
    return bool(_declarations(extra))


def commands_of(adapter: str, description: str, extra: Mapping[str, object]) -> typer.Typer | None:
    """The adapter's commands (None when it declares none). Functions are resolved, and their
    modules imported, only here: call it when the adapter's commands are called or listed."""
    declared = _declarations(extra)
    if not declared:
        return None
    app = typer.Typer(help=description, no_args_is_help=True)
    groups: dict[str, typer.Typer] = {}
    for name, target, run in declared:
        *path, last = str(name).split()
        _group(app, path, groups).command(last)(_command(adapter, str(target), run))
    return app
