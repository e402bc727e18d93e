"""JSON Schema contracts of a system: every ``*.schema.json`` of ``schemas/<name>/``, checked
on what the hub sends and on what a system sends the hub.

Schemas may refer to each other by ``$id`` (``dossier-record.schema.json``); all the files of a
directory are resolved in one registry, so each shape is written once. A failure names the
field (``data[0].MaHoSo``) and what is wrong with it, never the offending value: it may be a
citizen's identity number or phone number, and error messages travel in headers and logs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from hub.errors import HUB, ConfigError, HubError, ValidationError

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
    # jsonschema's own message repeats the value: only a known rule's wording is used.
    message = messages.get(str(error.validator), f"fails {error.validator} {rule!r:.80}")
    return field_path(where) or "(body)", message


class Contract:
    """Validators for every ``*.schema.json`` of one directory, by name without the suffix."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        docs: dict[str, dict[str, Any]] = {}
        for path in sorted(directory.glob(f"*{SUFFIX}")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                Draft202012Validator.check_schema(doc)
            except (OSError, ValueError, jsonschema.SchemaError) as exc:
                raise ConfigError(
                    f"{path} is not a valid JSON Schema: {exc}; fix the contract file",
                    field=str(path),
                ) from None
            docs[path.name[: -len(SUFFIX)]] = doc
        if not docs:
            raise ConfigError(
                f"no *{SUFFIX} files in {directory}; the contract files are missing",
                field=str(directory),
            )
        registry: Registry[Any] = Registry().with_resources(
            (doc["$id"], Resource.from_contents(doc)) for doc in docs.values() if "$id" in doc
        )
        self._validators = {
            name: Draft202012Validator(doc, registry=registry) for name, doc in docs.items()
        }
        self._fast = _fast_validators(docs)

    @property
    def names(self) -> list[str]:
        return sorted(self._validators)

    def problem(self, name: str, document: Any) -> tuple[str, str] | None:
        """The first bad field of ``document`` and what is wrong with it, or None."""
        validator = self._validators.get(name)
        if validator is None:
            raise ConfigError(
                f"no schema {name}{SUFFIX} in {self.directory}; known: {self.names}",
                field=name,
            )
        fast = self._fast.get(name)
        if fast is not None and _fast_valid(fast, document):
            return None
        # Invalid (or no fast validator): jsonschema finds the error and says it as before,
        # and has the last word.
        error = jsonschema.exceptions.best_match(validator.iter_errors(document))
        return None if error is None else describe(error)

    def validate(
        self,
        name: str,
        document: Any,
        *,
        error: type[HubError] = ValidationError,
        code: str | None = None,
        origin: str = HUB,
    ) -> None:
        """Raise ``error`` (a ``ValidationError`` unless told) naming the first bad field. The
        class and code say whose fault it is: the hub's mapping (``InvalidMessage``) or the
        system's reply (``PermanentError`` with ``origin="system:<name>"``)."""
        found = self.problem(name, document)
        if found is not None:
            field, message = found
            raise error(
                f"{field} {message} (contract {self.directory.name}/{name}{SUFFIX})",
                code=code,
                field=field,
                origin=origin,
            )


def _fast_validators(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """jsonschema-rs validators of the same documents, asked only whether a document is valid:
    validating every request to a system in Python was a tenth of a draining worker's CPU
    (docs/performance.md). Formats are not asserted, as in jsonschema's default. A schema it
    cannot build is left to jsonschema alone."""
    with_ids = [(doc["$id"], doc) for doc in docs.values() if "$id" in doc]
    try:
        registry = jsonschema_rs.Registry(with_ids) if with_ids else None
    except Exception:  # jsonschema-rs refuses what jsonschema took: keep jsonschema's verdicts
        return {}
    fast: dict[str, Any] = {}
    for name, doc in docs.items():
        try:
            fast[name] = jsonschema_rs.validator_for(doc, registry=registry,
                                                     validate_formats=False)
        except Exception:
            continue
    return fast


@lru_cache(maxsize=16)
def load_contract(directory: Path) -> Contract:
    return Contract(Path(directory))


def _fast_valid(fast: Any, document: Any) -> bool:
    try:
        return bool(fast.is_valid(document))
    except ValueError:
        # jsonschema-rs refuses Python types it does not know (hub.jsonbody's ExponentNumber,
        # a float written with an exponent): jsonschema judges those documents.
        return False
