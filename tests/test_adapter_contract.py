"""The adapter contract (hub.adapters) is typed to the end: nothing in its public interface is
``Any``, and no adapter reaches past it into the broker layer or a signing key (the consumer
signs and publishes what a handler returns)."""

from __future__ import annotations

import ast
import collections.abc
import inspect
import typing
from importlib.metadata import entry_points
from pathlib import Path

from sqlalchemy.engine import Engine

import hub.adapters
from hub.adapters import GROUP, AdapterSpec, Event
from hub.envelope import Envelope
from hub.lazy import Lazy
from hub.settings import PROJECT_ROOT, Settings
from hub.store.timeline import TimelineEvent

# What hub.adapters imports for type checking only (the registry stays light at run time).
_TYPE_ONLY = {"Engine": Engine, "Settings": Settings, "TimelineEvent": TimelineEvent}
_FORBIDDEN = ("hub.broker", "hub.signing")


def _hints(obj: object) -> list[object]:
    """Every annotation of ``obj``: a class's fields and its methods' signatures (properties
    too), a function's signature, or a type alias itself (Handler, CallbackParser, Write)."""
    names = {**vars(hub.adapters), **_TYPE_ONLY, "typing": typing}
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return [obj]
    found = list(typing.get_type_hints(obj, globalns=names).values())
    if inspect.isclass(obj):
        for member in vars(obj).values():
            target = member.fget if isinstance(member, property) else member
            if inspect.isfunction(target):
                found += typing.get_type_hints(target, globalns=names).values()
    return found


def _contains_any(hint: object) -> bool:
    if hint is typing.Any:
        return True
    return any(_contains_any(arg) for arg in typing.get_args(hint))


def test_the_adapter_interface_has_no_any() -> None:
    typed = {name: _hints(getattr(hub.adapters, name)) for name in hub.adapters.__all__
             if name != "GROUP"}
    assert len(typed) >= 14 and sum(len(h) for h in typed.values()) > 30, "too few to mean anything"
    assert {name: hints for name, hints in typed.items()
            if any(_contains_any(h) for h in hints)} == {}


def test_the_checker_sees_any() -> None:
    """The walk above would find an ``Any`` nested in an alias or a signature."""
    alias = collections.abc.Callable[[int], collections.abc.Awaitable[list[typing.Any]]]
    assert _contains_any(alias)

    def typed(x: dict[str, typing.Any]) -> None: ...

    assert any(_contains_any(h) for h in _hints(typed))


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append(node.module)
    return found


def test_no_adapter_imports_the_broker_or_signs() -> None:
    """Simulators included: none signs as its system does (none needs the hub's keys)."""
    modules = sorted((PROJECT_ROOT / "adapters").rglob("*.py"))
    assert len(modules) > 40, "the walk found too few modules to mean anything"
    offending = [f"{path.relative_to(PROJECT_ROOT)} imports {name}"
                 for path in modules for name in _imports(path)
                 if any(name == f or name.startswith(f"{f}.") for f in _FORBIDDEN)]
    assert offending == []


def test_the_readme_shows_the_toy_adapter_as_it_is() -> None:
    """README.md's "Adding a system" shows the toy adapter's whole code: kept in sync here."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Adding a system", 1)[1].split("\n## ", 1)[0]
    snippets = [block.split("\n", 1)[1] for block in section.split("```")[1::2]
                if block.startswith("python\n")]
    toy = PROJECT_ROOT / "tests" / "plugins" / "lienthong_toy" / "__init__.py"
    assert snippets == [toy.read_text(encoding="utf-8")]
    assert len(snippets[0].splitlines()) <= 36  # half of the 73 lines it took before


def _shipped() -> list[AdapterSpec]:
    # Through the entry points of this package (not discover(): a test may install others).
    found = [ep.load() for ep in entry_points(group=GROUP) if ep.value.startswith("adapters.")]
    assert {spec.name for spec in found} >= {"npsp", "payment", "population", "postal",
                                             "provincial"}
    return found


def _made(factory: object) -> object:
    """What a spec's factory makes, by its annotations: a class is itself, a function its
    declared return type; a Lazy is resolved first (what mypy cannot follow)."""
    target = factory.resolve() if isinstance(factory, Lazy) else factory
    if inspect.isclass(target):
        return target
    return typing.get_type_hints(target)["return"]


def _call_signature(made: object) -> tuple[list[object], object, bool]:
    """The parameters, the return type and whether it is a coroutine, of calling ``made``."""
    if typing.get_origin(made) is collections.abc.Callable:  # hub.adapters.Handler itself
        params, returned = typing.get_args(made)
        if typing.get_origin(returned) is collections.abc.Awaitable:
            return list(params), typing.get_args(returned)[0], True
        return list(params), returned, False
    assert inspect.isclass(made), made
    call = made.__call__  # type: ignore[operator]
    hints = typing.get_type_hints(call)
    names = [n for n in inspect.signature(call).parameters if n != "self"]
    return [hints[n] for n in names], hints["return"], inspect.iscoroutinefunction(call)


def test_every_shipped_adapter_fills_the_contract_even_through_lazy_imports() -> None:
    """``hub.lazy`` defers an adapter's imports, so mypy cannot see that what a spec names is
    a handler or a callback parser: its annotations are checked here instead."""
    results = (list[Envelope], collections.abc.Sequence[Envelope])
    for spec in _shipped():
        params, returned, is_async = _call_signature(_made(spec.make_handler))
        assert (spec.name, params, returned in results, is_async) == (
            spec.name, [Event], True, True)
        if spec.make_callback is not None:
            params, returned, _ = _call_signature(_made(spec.make_callback))
            assert (spec.name, params[0], returned in results) == (spec.name, bytes, True)
            assert params[1] in (dict[str, str], collections.abc.Mapping[str, str])
