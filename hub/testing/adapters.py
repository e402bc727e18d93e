"""An adapter's context for tests and demos: its shipped configuration pointed at a simulator,
with a call policy that fails fast."""

from __future__ import annotations

from typing import Any

from hub.adapterconfig import layered, read_adapter_config
from hub.adapters import AdapterContext, AdapterStore
from hub.settings import Settings

# Calls fail fast and are not retried in-process, so each failure shows as it is; the timeout
# stays generous so a loaded machine does not turn a normal call into one.
QUICK_POLICY: dict[str, Any] = {
    "timeout": 2.0,
    "attempts": 1,
    "backoff_initial": 0.01,
    "backoff_max": 0.02,
    "breaker_failures": 1000,
    "breaker_reset": 0.1,
}


def quick_context(
    settings: Settings,
    name: str,
    base_url: str,
    *,
    store: AdapterStore | None = None,
    **overrides: Any,
) -> AdapterContext:
    """Adapter ``name``'s shipped configuration pointed at ``base_url`` (a simulator) with
    ``QUICK_POLICY``; ``policy={...}`` adjusts the policy, other keywords the configuration.
    The deployment's overlay (``<data_dir>/adapters/``) is not read: a test sets what it
    needs here."""
    shipped = read_adapter_config(settings.mappings_dir, name)
    # The shipped policy is replaced whole, not merged: its rate limit has no place in a test.
    without_policy = {key: value for key, value in shipped.items() if key != "policy"}
    config = layered(
        (shipped.files[0], without_policy),
        (f"quick_context({name!r})", {"base_url": base_url,
                                      "policy": {**QUICK_POLICY, **overrides.pop("policy", {})},
                                      **overrides}),
    )
    return AdapterContext(settings=settings, config=config, store=store)
