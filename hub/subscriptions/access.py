"""Who may subscribe to what, and what of the personal data each subscription receives.

``mappings/ministries.toml`` (``Settings.ministries_file``):

- ``[personal_data]``: per event type, the personal data fields of its ``data`` (dotted paths;
  ``[]`` steps into every item of a list). An event type without an entry carries no
  declaration: nobody may subscribe to it, and the fan-out refuses to send it (default deny).
- ``[[ministries]]``: each ministry's system id, the event types and agencies it may subscribe
  to (exact values, a prefix ending in ``*``, or ``*``; an empty list allows nothing) and the
  projections it is entitled to (the first is the default of its subscriptions).

A projection (``mappings/projections/<name>.toml``) names, per event type, the personal data
fields it lets through (``[keep]``); every other declared personal field is removed before the
hub signs the copy. A projection that keeps nothing removes every personal field.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub import tomlmap
from hub.envelope import check_source
from hub.errors import AccessDenied, ConfigError, PermanentError
from hub.model import EVENT_MODELS
from hub.settings import Settings
from hub.subscriptions.model import ANY, Subscription


def allows(patterns: tuple[str, ...], value: str) -> bool:
    return any(p in (ANY, value) or (p.endswith("*") and value.startswith(p[:-1]))
               for p in patterns)


@dataclass(frozen=True, slots=True)
class Ministry:
    system_id: str
    name: str
    allowed_types: tuple[str, ...]
    allowed_agencies: tuple[str, ...]
    projections: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Projection:
    name: str
    description: str
    keep: dict[str, frozenset[str]]  # event type -> personal fields let through


@dataclass(frozen=True, slots=True)
class AccessList:
    personal: dict[str, tuple[str, ...]]  # event type -> personal data paths
    ministries: dict[str, Ministry]
    projections: dict[str, Projection] = field(default_factory=dict)

    @classmethod
    def load(cls, settings: Settings) -> AccessList:
        return cls.read(Path(settings.ministries_file), Path(settings.projections_dir))

    @classmethod
    def read(cls, ministries_file: Path, projections_dir: Path) -> AccessList:
        doc = tomlmap.read(ministries_file)
        where = ministries_file.name
        personal: dict[str, tuple[str, ...]] = {}
        for event_type, paths in tomlmap.table(doc, "personal_data", where).items():
            at = f"{where} [personal_data].{event_type}"
            if event_type not in EVENT_MODELS:
                raise ConfigError(f"{event_type!r} is not an event type of the hub; known: "
                                  f"{sorted(EVENT_MODELS)}", field=at)
            if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                raise ConfigError("must be a list of dotted field paths", field=at)
            fields = EVENT_MODELS[event_type].model_fields
            for p in paths:
                if p.split(".")[0].removesuffix("[]") not in fields:
                    raise ConfigError(f"{p!r} is not a field of {event_type}'s data; fields: "
                                      f"{sorted(fields)}", field=at)
            personal[event_type] = tuple(paths)
        ministries: dict[str, Ministry] = {}
        for i, raw in enumerate(doc.get("ministries", [])):
            at = f"{where} [[ministries]] #{i + 1}"
            if not isinstance(raw, dict):
                raise ConfigError("must be a table", field=at)
            system_id = check_source(tomlmap.string(raw, "system_id", at), f"{at}.system_id")
            lists = {}
            for key in ("allowed_types", "allowed_agencies", "projections"):
                value = raw.get(key, [])
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ConfigError("must be a list of strings", field=f"{at}.{key}")
                lists[key] = tuple(value)
            if system_id in ministries:
                raise ConfigError(f"{system_id} is listed twice; keep one entry",
                                  field=f"{at}.system_id")
            ministries[system_id] = Ministry(
                system_id, str(raw.get("name", system_id)), lists["allowed_types"],
                lists["allowed_agencies"], lists["projections"])
        projections = {}
        names = {p for m in ministries.values() for p in m.projections}
        for name in sorted(names):
            projections[name] = _read_projection(projections_dir, name, personal)
        return cls(personal, ministries, projections)

    def ministry(self, system_id: str) -> Ministry:
        found = self.ministries.get(system_id)
        if found is None:
            raise AccessDenied(
                f"{system_id} is not in the ministries' access list; add a [[ministries]] "
                "entry to mappings/ministries.toml (LIENTHONG_MINISTRIES_FILE) first",
                code="client.ministry_unknown", field="ministry")
        return found

    def check(self, sub: Subscription) -> Subscription:
        """``sub`` if its ministry may have it (default deny), else ``AccessDenied`` naming
        what is not allowed."""
        m = self.ministry(sub.ministry)
        for t in sub.event_types:
            if not allows(m.allowed_types, t):
                raise AccessDenied(
                    f"{sub.ministry} may not subscribe to {t}; its access list allows "
                    f"{list(m.allowed_types) or 'no event type'}",
                    code="client.type_not_allowed", field="event_types")
            if t not in self.personal:
                raise AccessDenied(
                    f"{t} has no personal data declaration ([personal_data] of "
                    "mappings/ministries.toml), so the hub cannot project it: declare its "
                    "personal fields (an empty list if it has none) first",
                    code="client.type_not_declared", field="event_types")
        for a in sub.agencies:
            allowed = ANY in m.allowed_agencies if a == ANY else allows(m.allowed_agencies, a)
            if not allowed:
                raise AccessDenied(
                    f"{sub.ministry} may not subscribe to agency {a!r}; its access list allows "
                    f"{list(m.allowed_agencies) or 'no agency'}",
                    code="client.agency_not_allowed", field="agencies")
        if sub.projection not in m.projections:
            raise AccessDenied(
                f"{sub.ministry} is not entitled to the projection {sub.projection!r}; its "
                f"entry allows {list(m.projections) or 'none'}",
                code="client.projection_not_allowed", field="projection")
        return sub

    def removed(self, projection: str, event_type: str) -> tuple[str, ...]:
        """The personal fields of ``event_type`` that ``projection`` removes. Raises
        ``PermanentError`` for a type without a declaration: nothing unprojected is sent."""
        paths = self.personal.get(event_type)
        if paths is None:
            raise PermanentError(
                f"{event_type} has no personal data declaration in [personal_data] of "
                "mappings/ministries.toml; the hub sends no subscription a copy it cannot "
                "project: declare the type's personal fields, then replay this message",
                code="server.projection_undeclared", field="type")
        proj = self.projections.get(projection)
        if proj is None:
            raise PermanentError(
                f"the projection {projection!r} is not loaded (no ministry lists it, or its "
                "file is missing); fix mappings/ministries.toml or mappings/projections/",
                code="server.projection_unknown", field="projection")
        keep = proj.keep.get(event_type, frozenset())
        return tuple(p for p in paths if p not in keep)

    def project(self, projection: str, event_type: str, data: Any) -> Any:
        """``data`` without the personal fields ``projection`` does not keep (``removed``)."""
        return without(data, self.removed(projection, event_type))


def without(data: Any, paths: tuple[str, ...]) -> Any:
    """A copy of ``data`` without the fields at ``paths`` (``data`` itself when none)."""
    if not paths:
        return data
    out = copy.deepcopy(data)
    for p in paths:
        _remove(out, p.split("."))
    return out


def _read_projection(directory: Path, name: str,
                     personal: dict[str, tuple[str, ...]]) -> Projection:
    path = directory / f"{name}.toml"
    doc = tomlmap.read(path)
    keep_raw = doc.get("keep", {})
    if not isinstance(keep_raw, dict):
        raise ConfigError("[keep] must be a table of event type = [fields]", field=path.name)
    keep: dict[str, frozenset[str]] = {}
    for event_type, fields in keep_raw.items():
        at = f"{path.name} [keep].{event_type}"
        if not isinstance(fields, list):
            raise ConfigError("must be a list of personal field paths", field=at)
        unknown = [f for f in fields if f not in personal.get(event_type, ())]
        if unknown:
            raise ConfigError(
                f"{unknown} are not personal fields declared for {event_type} in "
                "[personal_data] of mappings/ministries.toml; keep only declared fields",
                field=at)
        keep[event_type] = frozenset(fields)
    return Projection(name, str(doc.get("description", "")), keep)


def _remove(node: Any, path: list[str]) -> None:
    if not path or node is None:
        return
    head, rest = path[0], path[1:]
    many = head.endswith("[]")
    key = head.removesuffix("[]")
    if not isinstance(node, dict) or key not in node:
        return
    if not rest:
        del node[key]
        return
    if many:
        for item in node[key] or []:
            _remove(item, rest)
    else:
        _remove(node[key], rest)
