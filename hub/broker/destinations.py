"""Destinations: the work queues of the hub and the routing-key patterns they bind.

They come from two places, merged in this order:
1. the adapter registry (``hub.adapters``): each adapter is a destination named after it, with
   its bindings and ordering;
2. ``mappings/topology.toml`` (``Settings.topology_file``), where an operator adds destinations
   that have no adapter (a ministry's subscription), adds or replaces bindings, changes ordering,
   concurrency or partitions, or leaves an adapter's destination out. The file's own comments
   describe its format.

The merged destination is the one source of truth: the queues are declared from it and the
workers take their ordering, concurrency and partitions from it (``hub.runtime``), never from
the adapter's spec alone.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from hub.adapters import GROUP, AdapterSpec
from hub.errors import ConfigError

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# A topic pattern: dot-separated words, each a literal word, "*" (one word) or "#" (any).
_WORD_RE = re.compile(r"^(\*|#|[A-Za-z0-9_-]+)$")
_KEYS = {"bindings", "extra_bindings", "ordered", "description", "enabled", "concurrency",
         "partitions"}
# Partitions bind slots of hub.broker.names.SLOTS: more partitions than slots would leave some
# empty.
MAX_PARTITIONS = 64
MAX_CONCURRENCY = 10_000


@dataclass(frozen=True, slots=True)
class Destination:
    name: str
    bindings: tuple[str, ...]
    # Ordered: one dossier's events are applied in the order they were published (its
    # deliveries one at a time, a single active consumer per queue); different dossiers still
    # run concurrently.
    ordered: bool = True
    description: str = ""
    origin: str = "adapter"  # "adapter", "topology.toml" or "adapter+topology.toml"
    # Deliveries a worker process handles at once (None: Settings.worker_concurrency).
    concurrency: int | None = None
    # Work queues the destination's work is split into by dossier (hub.broker.names.slot_of),
    # each with a single active consumer, so that several worker processes share an ordered
    # destination. 1: its one plain work queue.
    partitions: int = 1


def check_name(name: str, where: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(
            f"destination name {name!r} is not usable in a queue name; use lowercase letters, "
            "digits, '-' and '_' (at most 63 characters)",
            field=where,
        )
    return name


def check_pattern(pattern: str, where: str) -> str:
    if not isinstance(pattern, str) or not pattern or not all(
        _WORD_RE.match(word) for word in pattern.split(".")
    ):
        raise ConfigError(
            f"binding {pattern!r} is not a topic pattern; write dot-separated words, '*' for one "
            "word, '#' for any number, e.g. 'dossier.*.000_00_00_H56.#'",
            field=where,
        )
    return pattern


def from_adapter(spec: AdapterSpec) -> Destination:
    name = check_name(spec.name, f"adapter {spec.name!r}: name")
    bindings = tuple(
        check_pattern(p, f"adapter {spec.name!r}: bindings") for p in spec.bindings
    )
    return Destination(name, bindings, bool(spec.ordered), spec.description, "adapter")


def as_destinations(
    items: Iterable[Destination | AdapterSpec] | Mapping[str, AdapterSpec],
) -> list[Destination]:
    """Accept adapter specs (a list, or ``discover()``'s mapping) or ready destinations."""
    values: Iterable[Destination | AdapterSpec] = (
        items.values() if isinstance(items, Mapping) else items
    )
    return [item if isinstance(item, Destination) else from_adapter(item) for item in values]


def discover_destinations() -> tuple[list[Destination], list[str]]:
    """The destinations of every installed adapter that imports, and one problem line per
    adapter that does not (so a broken adapter does not stop the rest of the topology)."""
    found: list[Destination] = []
    problems: list[str] = []
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            spec = ep.load()
        except Exception as exc:  # any import failure is reported, not fatal
            problems.append(
                f"adapter {ep.name!r} ({ep.value}) failed to import: {type(exc).__name__}: "
                f"{exc}; its work queue is left out until the adapter imports (or declare it "
                "in mappings/topology.toml)"
            )
            continue
        if not isinstance(spec, AdapterSpec):
            problems.append(
                f"entry point {ep.name!r} ({ep.value}) is not an AdapterSpec; expose "
                "`adapter = AdapterSpec(...)` in the package"
            )
            continue
        try:
            found.append(from_adapter(spec))
        except ConfigError as exc:
            problems.append(str(exc))
    return found, problems


def load_overrides(path: Path) -> dict[str, dict[str, Any]]:
    """``[destinations.<name>]`` tables of the topology file, checked (an absent file is
    empty)."""
    if not path.exists():
        return {}
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}; fix the file", field=str(path)
        ) from None
    unknown_top = set(doc) - {"destinations"}
    if unknown_top:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {sorted(unknown_top)}; only [destinations.<name>] "
            "tables are read",
            field=sorted(unknown_top)[0],
        )
    tables = doc.get("destinations", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: 'destinations' must be a table", field="destinations")
    out: dict[str, dict[str, Any]] = {}
    for name, table in tables.items():
        where = f"{path.name}: destinations.{name}"
        check_name(name, where)
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table", field=where)
        unknown = set(table) - _KEYS
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}",
                field=f"{where}.{sorted(unknown)[0]}",
            )
        for key in ("bindings", "extra_bindings"):
            if key in table:
                value = table[key]
                if not isinstance(value, list):
                    raise ConfigError(
                        f"{where}.{key} must be a list of patterns, got {value!r}",
                        field=f"{where}.{key}",
                    )
                for pattern in value:
                    check_pattern(pattern, f"{where}.{key}")
        for key, most in (("concurrency", MAX_CONCURRENCY), ("partitions", MAX_PARTITIONS)):
            if key in table and (isinstance(table[key], bool) or not isinstance(table[key], int)
                                 or not 1 <= table[key] <= most):
                raise ConfigError(
                    f"{where}.{key} must be a whole number from 1 to {most}, got {table[key]!r}",
                    field=f"{where}.{key}",
                )
        for key in ("ordered", "enabled"):
            if key in table and not isinstance(table[key], bool):
                raise ConfigError(
                    f"{where}.{key} must be true or false, got {table[key]!r}",
                    field=f"{where}.{key}",
                )
        if "description" in table and not isinstance(table["description"], str):
            raise ConfigError(f"{where}.description must be a string", field=f"{where}.description")
        out[name] = table
    return out


def resolve(
    given: Iterable[Destination] | None, overrides: Mapping[str, Mapping[str, Any]]
) -> tuple[list[Destination], dict[str, tuple[str, ...]], list[str]]:
    """The destinations of a topology, the patterns of those its file disables (``disabled``),
    and the problem lines of the adapters left out.

    Every installed adapter is resolved, ``given`` laid over them (``None``: the installed
    adapters are the topology), and the topology file's tables merged over all of them, so a
    table may tune any installed adapter whatever set a topology is built with (a test's, a
    tool's own). Then what was asked for is selected: with ``given``, the given destinations and
    those only the file declares. A given set's topology has no problem lines: an adapter it was
    not built with is not its concern."""
    installed, problems = discover_destinations()
    # An installed adapter that does not load is left out, and with it the tables that only
    # tune it, so that it does not stop the rest of the topology (its problem line says why).
    loaded = {dest.name for dest in installed}
    unloaded = {ep.name for ep in entry_points(group=GROUP)} - loaded
    overrides = {name: table for name, table in overrides.items()
                 if name not in unloaded or {"bindings", "extra_bindings"} & table.keys()}
    if given is None:
        return merge(installed, overrides), disabled(installed, overrides), problems
    chosen = list(given)
    names = {dest.name for dest in chosen}
    base = chosen + [d for d in installed if d.name not in names]
    merged = merge(base, overrides)
    return ([d for d in merged if d.name in names or d.origin == "topology.toml"],
            disabled(base, overrides), [])


def disabled(
    base: Iterable[Destination], overrides: Mapping[str, Mapping[str, Any]]
) -> dict[str, tuple[str, ...]]:
    """The patterns of the destinations the topology file disables (``enabled = false``), by
    name: a queue an earlier configuration bound on them must be unbound, or it would fill up
    unconsumed and then refuse every publish they match."""
    by_name = {dest.name: dest for dest in base}
    return {name: _bindings(table, by_name.get(name)) for name, table in sorted(overrides.items())
            if table.get("enabled", True) is False}


def _bindings(table: Mapping[str, Any], current: Destination | None) -> tuple[str, ...]:
    """A destination's patterns: the table's ``bindings`` or the adapter's, plus its
    ``extra_bindings``."""
    bindings = tuple(table.get("bindings", current.bindings if current else ()))
    return bindings + tuple(p for p in table.get("extra_bindings", ()) if p not in bindings)


def merge(
    base: Iterable[Destination], overrides: Mapping[str, Mapping[str, Any]]
) -> list[Destination]:
    """Apply the topology file's tables over the adapters' destinations, sorted by name."""
    merged: dict[str, Destination] = {}
    for dest in base:
        if dest.name in merged:
            raise ConfigError(
                f"destination {dest.name!r} is given twice; adapter names must be unique",
                field=dest.name,
            )
        merged[dest.name] = dest
    for name, table in overrides.items():
        if table.get("enabled", True) is False:
            merged.pop(name, None)
            continue
        current = merged.get(name)
        bindings = _bindings(table, current)
        if not bindings:
            raise ConfigError(
                f"destination {name!r} in the topology file has no bindings and no adapter "
                "provides any; add bindings = [\"<pattern>\", ...]",
                field=f"destinations.{name}.bindings",
            )
        if current is None:
            dest = Destination(
                name,
                bindings,
                bool(table.get("ordered", True)),
                str(table.get("description", "")),
                "topology.toml",
                concurrency=table.get("concurrency"),
                partitions=int(table.get("partitions", 1)),
            )
        else:
            dest = replace(
                current,
                bindings=bindings,
                ordered=bool(table.get("ordered", current.ordered)),
                description=str(table.get("description", current.description)),
                origin="adapter+topology.toml",
                concurrency=table.get("concurrency", current.concurrency),
                partitions=int(table.get("partitions", current.partitions)),
            )
        if dest.partitions > 1 and not dest.ordered:
            raise ConfigError(
                f"destination {name!r} has partitions = {dest.partitions} but is not ordered; "
                "partitions keep one dossier's events in one queue for ordered destinations "
                "only (the consumers of an unordered queue share it as it is): remove "
                "partitions or set ordered = true",
                field=f"destinations.{name}.partitions",
            )
        merged[name] = dest
    return [merged[k] for k in sorted(merged)]
