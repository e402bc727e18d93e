"""Deferred imports for adapters' specs: the registry imports every installed adapter, whose heavy
modules (httpx, zeep, SQLAlchemy, its own tables) should load only when a worker, a callback
parser, a simulator or a command is built."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.adapters import AdapterContext


def lazy(target: str, *, call: bool = True) -> Callable[..., Any]:
    """``"package.module:name"`` as a callable that imports it when called and calls it (or,
    with ``call=False``, returns it): the registry imports every adapter, whose heavy modules
    load only when a worker, a callback parser, a simulator or a command is built."""
    module, _, name = target.partition(":")

    def load(*args: Any, **kwargs: Any) -> Any:
        found = getattr(import_module(module), name)
        return found(*args, **kwargs) if call else found

    return load


def secret_variables(config: str, *keys: str) -> Callable[[AdapterContext], list[str]]:
    """An adapter's ``callback_secrets``: given its context, the environment variables its
    configuration model (``"package.module:Model"``) names under ``keys``."""

    def names(ctx: AdapterContext) -> list[str]:
        return [getattr(lazy(config, call=False)().from_context(ctx), key) for key in keys]

    return names
