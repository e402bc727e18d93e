"""The postal service's message contracts (``schemas/postal/*.schema.json``), checked on what
the hub sends (a failure is a mapping bug: never retried) and on what the service sends back."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from hub.errors import ConfigError, HubError

SYSTEM = "postal service"
KINDS = ("order", "order-reply", "tracking-reply", "webhook")


@lru_cache(maxsize=32)
def _validator(schemas_dir: Path, kind: str) -> Draft202012Validator:
    path = schemas_dir / "postal" / f"{kind}.schema.json"
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"contract {path} cannot be read: {exc}", field=kind) from None
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def check(
    schemas_dir: Path,
    kind: str,
    message: Any,
    error: type[HubError],
    code: str,
    origin: str = "hub",
) -> None:
    """Raise ``error`` naming the first field of ``message`` that breaks the ``kind`` contract."""
    validator = _validator(Path(schemas_dir), kind)
    problem = best_match(validator.iter_errors(message))
    if problem is None:
        return
    where = ".".join(str(p) for p in problem.absolute_path) or None
    # The message never repeats the offending value: it may be personal data (a phone number,
    # an identity number) and error messages travel in headers and logs.
    if problem.validator in ("required", "additionalProperties", "dependentRequired"):
        what = problem.message
    else:
        what = f"fails {problem.validator} {problem.validator_value!r:.80}"
    raise error(
        f"does not match the {SYSTEM}'s {kind} contract: {what}",
        code=code,
        field=where,
        origin=origin,
    )
