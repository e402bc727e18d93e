"""The adapter registry. An external system is a plug-in: a package that exposes an
``AdapterSpec`` under the ``lienthong.adapters`` entry-point group. The core only ever sees
the spec, never a system's name in code.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from hub.adapterconfig import ConfigData, overlay_dir, read_adapter_config
from hub.errors import ConfigError

GROUP = "lienthong.adapters"


class Delivery(Protocol):
    """What a handler receives (implemented by hub.broker.messages.Delivery)."""

    body: bytes
    headers: dict[str, Any]
    attempt: int

    @property
    def envelope(self) -> Any: ...


# A handler takes a verified delivery and returns the messages it causes (hub.broker.messages
# .Outgoing), or raises RetryableError / PermanentError / InvalidMessage.
Handler = Callable[[Any], Awaitable[Sequence[Any]]]


@dataclass
class AdapterContext:
    """What the core hands an adapter when it builds its worker or callback parser."""

    settings: Any  # hub.settings.Settings
    # The adapter's own settings: mappings/<name>/config.toml with the deployment's overrides
    # (hub.adapterconfig.ConfigData); its typed model reads them (AdapterConfig.from_context).
    config: dict[str, Any]
    signer: Any = None  # hub.signing.Signer of the hub, for messages the adapter emits
    store: Any = None  # hub.store.Store
    events_exchange: str = ""


@dataclass
class AdapterSpec:
    name: str  # short destination name, also its work queue suffix: "npsp", "payment"...
    description: str
    # Routing-key patterns (hub.envelope.routing_key) the adapter's work queue binds on the
    # events exchange.
    bindings: Sequence[str]
    make_handler: Callable[[AdapterContext], Handler]
    # Translate an inbound call of the system (payment callback, postal webhook) into canonical
    # envelopes; None when the system never calls the hub.
    make_callback: Callable[[AdapterContext], Callable[[bytes, dict[str, str]], Any]] | None = None
    # How the system's calls prove who sent them. None (the default): the caller authenticates
    # as a client of the hub (clients.toml: API key, bearer token or client certificate) whose
    # entry lists this adapter in ``callbacks``, and every envelope the parser returns must be
    # for an agency that client may act for; such a parser only translates (it keeps nothing
    # itself), because the hub checks its envelopes after it ran. Otherwise the call carries
    # its own proof (a checksum made with a shared secret, a token) that the parser checks:
    # given the adapter's context, the environment variables holding the secrets it needs.
    # The hub refuses the calls (503 ``server.secret_missing``) while any of them is unset,
    # and warns at start-up: a door is never open for want of its secret.
    callback_secrets: Callable[[AdapterContext], Sequence[str]] | None = None
    # Build a simulator of the system (an object with start() -> base URL, and stop()).
    make_simulator: Callable[..., Any] | None = None
    # Status events of one dossier must be applied in order: single active consumer.
    ordered: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def missing_secrets(names: Sequence[str]) -> list[str]:
    """Of the environment variables ``names`` (an adapter's ``callback_secrets``), those that
    are unset or empty. A blank name is kept as missing: the adapter's configuration names no
    variable, so its secret can never be set."""
    return [name for name in names if not name or not os.environ.get(name)]


def discover() -> dict[str, AdapterSpec]:
    """Every installed adapter, by name."""
    found: dict[str, AdapterSpec] = {}
    for ep in entry_points(group=GROUP):
        try:
            spec = ep.load()
        except Exception as exc:
            raise ConfigError(
                f"adapter {ep.name!r} ({ep.value}) failed to load: {exc!r}; fix or uninstall it"
            ) from exc
        if not isinstance(spec, AdapterSpec):
            raise ConfigError(
                f"entry point {ep.name!r} ({ep.value}) is not an AdapterSpec; expose "
                "`adapter = AdapterSpec(...)` in the package"
            )
        found[spec.name] = spec
    return found


def load_config(
    mappings_dir: Path, name: str, overlay_dir: Path | None = None
) -> ConfigData:
    """An adapter's raw configuration: ``mappings/<name>/config.toml`` (the shipped defaults),
    with ``<overlay_dir>/<name>.toml`` merged over it key by key (a deployment's own endpoints
    and limits, kept out of the repository), remembering which file set each key. Its model
    (``hub.adapterconfig.AdapterConfig``) checks it. Empty if neither exists."""
    return read_adapter_config(mappings_dir, name, overlay_dir)


def context_for(
    settings: Any, name: str, *, signer: Any = None, store: Any = None
) -> AdapterContext:
    """The context an adapter's worker or callback parser is built with."""
    return AdapterContext(
        settings=settings,
        config=load_config(settings.mappings_dir, name, overlay_dir(settings)),
        signer=signer,
        store=store,
        events_exchange=f"{settings.name_prefix}.events",
    )
