"""The postal service's message contracts (``schemas/postal/*.schema.json``), checked on what
the hub sends (a failure is a mapping bug: never retried) and on what the service sends back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub.contracts import load_contract
from hub.errors import HUB, HubError

KINDS = ("order", "order-reply", "tracking-reply", "webhook")


def check(
    schemas_dir: Path, kind: str, message: Any, error: type[HubError], code: str, origin: str = HUB
) -> None:
    """Raise ``error`` naming the first field of ``message`` that breaks the ``kind`` contract."""
    contract = load_contract(Path(schemas_dir) / "postal")
    contract.validate(kind, message, error=error, code=code, origin=origin)
