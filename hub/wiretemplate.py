"""A system's message declared as a template in its mapping files (``mappings/<name>/*.toml``):
the message's fields as sent, where a string ``"$name"`` stands for a value the adapter gives
(``"$name?"``: the field is left out when the value is None or empty) and anything else is sent
as written. A renamed or added wire field is then an edit of the
mapping, not of code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub import tomlmap
from hub.errors import ConfigError


def _names(template: Any) -> set[str]:
    if isinstance(template, str):
        return {template[1:].removesuffix("?")} if template.startswith("$") else set()
    if isinstance(template, Mapping):
        return set().union(*(_names(v) for v in template.values()))
    if isinstance(template, list):
        return set().union(*(_names(v) for v in template))
    return set()


def _left_out(template: Any, values: Mapping[str, Any]) -> bool:
    return (isinstance(template, str) and template.startswith("$") and template.endswith("?")
            and values[template[1:-1]] in (None, ""))


def _filled(template: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(template, str) and template.startswith("$"):
        return values[template[1:].removesuffix("?")]
    if isinstance(template, Mapping):
        return {key: _filled(value, values) for key, value in template.items()
                if not _left_out(value, values)}
    if isinstance(template, list):
        return [_filled(value, values) for value in template]
    return template


@dataclass(frozen=True)
class WireTemplate:
    template: Mapping[str, Any]
    where: str  # the file and table declaring it, for errors

    @classmethod
    def parse(cls, doc: Mapping[str, Any], key: str, file: str) -> WireTemplate:
        """The template ``[key]`` of ``doc``, read from ``file``."""
        found, where = doc.get(key), f"{file} [{key}]"
        if not isinstance(found, Mapping) or not found:
            raise ConfigError("must be a table of the message's fields", field=where)
        return cls(found, where)

    def fill(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The message with ``values`` in place of its ``"$name"`` strings."""
        missing = sorted(_names(self.template) - set(values))
        if missing:
            raise ConfigError(
                f"uses ${', $'.join(missing)}, which the adapter does not give; use one of "
                f"${', $'.join(sorted(values))} or write the value itself", field=self.where)
        filled: dict[str, Any] = _filled(self.template, values)
        return filled


@dataclass(frozen=True)
class Messages:
    """A system's messages as the hub sends them (``mappings/<name>/messages.toml``): a
    template a table, and ``personal``, the wire names of the personal data they carry, masked
    in errors and logs."""

    templates: Mapping[str, WireTemplate]
    personal: frozenset[str]

    @classmethod
    def load(cls, path: Path, *keys: str) -> Messages:
        """The file ``path`` with the templates ``keys``."""
        doc = tomlmap.read(path)
        return cls({key: WireTemplate.parse(doc, key, path.name) for key in keys},
                   frozenset(map(str, doc.get("personal", ()))))

    def __getitem__(self, key: str) -> WireTemplate:
        return self.templates[key]
