"""The provincial systems' contract: the JSON Schemas in ``schemas/provincial/``, one per
request, reply and pushed update.

Schemas refer to each other by file name (``progress.schema.json``), resolved against their
``$id`` in one registry, so each shape is written once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from hub.errors import ConfigError, ValidationError

SUFFIX = ".schema.json"


def field_path(path: Iterable[Any]) -> str:
    """``["data", 0, "MaHoSo"]`` -> ``data[0].MaHoSo``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe(error: jsonschema.ValidationError) -> tuple[str, str]:
    """The field an error concerns and a message that names what is wrong."""
    where = list(error.absolute_path)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, dict):
        missing = [k for k in error.validator_value if k not in instance]
        if missing:
            return field_path([*where, missing[0]]), "is required but missing"
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in instance if k not in allowed)
        if extra:
            return field_path([*where, extra[0]]), "is not a field of this contract"
    # The offending value is left out: it may be a citizen's identity number or name.
    rule = error.validator_value
    messages = {
        "pattern": f"does not match the pattern {rule!r}",
        "enum": f"is not one of {rule!r}",
        "const": f"must be {rule!r}",
        "type": f"must be of JSON type {rule!r}",
        "minLength": f"is shorter than {rule} characters",
        "maxLength": f"is longer than {rule} characters",
        "minItems": f"needs at least {rule} item(s)",
        "minimum": f"must be at least {rule}",
    }
    message = messages.get(str(error.validator), error.message[:200])
    return field_path(where) or "(body)", message


class Contract:
    """Validators for every ``*.schema.json`` of one directory, by name without the suffix."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        docs: dict[str, dict[str, Any]] = {}
        for path in sorted(directory.glob(f"*{SUFFIX}")):
            try:
                docs[path.name[: -len(SUFFIX)]] = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise ConfigError(f"{path} is not valid JSON: {exc}", field=str(path)) from None
        if not docs:
            raise ConfigError(
                f"no *{SUFFIX} files in {directory}; the contract files are missing",
                field=str(directory),
            )
        registry: Registry[Any] = Registry().with_resources(
            (doc["$id"], Resource.from_contents(doc)) for doc in docs.values()
        )
        self._validators = {
            name: Draft202012Validator(doc, registry=registry) for name, doc in docs.items()
        }

    @property
    def names(self) -> list[str]:
        return sorted(self._validators)

    def validate(self, name: str, document: Any) -> None:
        """Raise ``hub.errors.ValidationError`` naming the first bad field."""
        validator = self._validators.get(name)
        if validator is None:
            raise ConfigError(
                f"no schema {name}{SUFFIX} in {self.directory}; known: {self.names}",
                field=name,
            )
        error = jsonschema.exceptions.best_match(validator.iter_errors(document))
        if error is not None:
            field, message = describe(error)
            raise ValidationError(f"{message} (contract {name}{SUFFIX})", field=field)


@lru_cache(maxsize=8)
def load_contract(directory: Path) -> Contract:
    return Contract(directory)
