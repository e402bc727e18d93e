"""Deferred imports for adapters' specs: the registry imports every installed adapter, whose heavy
modules (httpx, zeep, SQLAlchemy, its own tables) should load only when a worker, a callback
parser, a simulator or a command is built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.adapters import AdapterContext


@dataclass(frozen=True)
class Lazy:
    """``target`` (``"package.module:name"``) as a callable that imports it when called and
    calls it (or, with ``call=False``, returns it). Typed ``Any`` for what it cannot know
    before the import: ``resolve`` gives the target itself, which the adapter contract's test
    checks against the slot of ``AdapterSpec`` it fills."""

    target: str
    call: bool = True

    def resolve(self) -> Any:
        module, _, name = self.target.partition(":")
        return getattr(import_module(module), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        found = self.resolve()
        return found(*args, **kwargs) if self.call else found


def lazy(target: str, *, call: bool = True) -> Lazy:
    """``"package.module:name"``, imported only when called: the registry imports every
    adapter, whose heavy modules load only when a worker, a callback parser, a simulator or a
    command is built."""
    return Lazy(target, call)


def secret_variables(config: str, *keys: str) -> Callable[[AdapterContext], list[str]]:
    """An adapter's ``callback_secrets``: given its context, the environment variables its
    configuration model (``"package.module:Model"``) names under ``keys``."""

    def names(ctx: AdapterContext) -> list[str]:
        return [getattr(lazy(config, call=False)().from_context(ctx), key) for key in keys]

    return names
