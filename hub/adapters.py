"""The adapter contract and registry. An external system is a plug-in: a package that exposes
an ``AdapterSpec`` under the ``lienthong.adapters`` entry-point group. The core only ever sees
the spec, never a system's name in code.

An adapter translates and nothing else. Its handler receives a verified canonical ``Event``
and returns the canonical events it causes (``Envelope``s); the consumer signs them with the
worker's key, numbers them in their dossiers' sequence, logs and publishes them. An adapter
never touches the broker nor a signing key: what it may reach of the hub is typed here.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from hub.adapterconfig import ConfigData, overlay_dir, read_adapter_config
from hub.envelope import Envelope
from hub.errors import ConfigError

if TYPE_CHECKING:  # the registry imports every adapter: SQLAlchemy loads when a store is used
    from sqlalchemy.engine import Engine

    from hub.settings import Settings
    from hub.store.timeline import TimelineEvent

GROUP = "lienthong.adapters"

__all__ = [
    "GROUP",
    "AdapterContext",
    "AdapterSpec",
    "AdapterStore",
    "CallbackParser",
    "Event",
    "Handler",
    "Simulator",
    "StoreWrites",
    "Write",
    "context_for",
    "discover",
    "load_config",
    "missing_secrets",
    "writes_to",
]


class StoreWrites(Protocol):
    """What a write an adapter records gets: the unit of work of the hub's store
    (``hub.store.UnitOfWork``), in the few methods adapters use."""

    def set_sequence(self, consumer: str, dossier_code: str, sequence: int) -> bool: ...

    def sequence_keep(self, consumer: str, dossier_code: str, sequence: int) -> None: ...

    def timeline_add_many(self, events: Sequence[TimelineEvent]) -> int: ...


class AdapterStore(Protocol):
    """The hub's store as an adapter reaches it (``hub.store.Store``): the engine its own
    tables live on, the last sequence it applied per dossier, and units of work."""

    @property
    def engine(self) -> Engine: ...

    def last_sequence(self, consumer: str, dossier_code: str) -> int | None: ...

    def last_sequences(self, consumer: str, dossier_codes: list[str]) -> dict[str, int]: ...

    def set_sequence(self, consumer: str, dossier_code: str, sequence: int) -> bool: ...

    def begin(self) -> AbstractContextManager[StoreWrites]: ...


# A write to run in a unit of work of the hub's store once the handler has returned.
Write = Callable[[StoreWrites], object]


@dataclass(frozen=True, slots=True)
class Event:
    """What a handler receives: a canonical event whose signature the hub verified, the
    attempt it is (0 first, n on the n-th retry), and ``record`` for what follows the call."""

    envelope: Envelope
    attempt: int = 0
    # Where ``record`` hands a write: the consumer's batch of writes (``writes_to`` runs it
    # at once in a store, for a handler called outside a worker).
    recorder: Callable[[Write], None] | None = None

    def record(self, write: Write) -> None:
        """Have ``write(tx)`` run once the handler has returned: what a handler writes *after*
        it called its system goes here, so that a store that cannot take the write makes the
        consumer retry the write, never the call."""
        if self.recorder is None:
            raise ConfigError(
                f"event {self.envelope.id} was given no recorder, so record() has nowhere to "
                "write; build it with recorder=writes_to(store), or let a worker deliver it",
                field="recorder")
        self.recorder(write)


def writes_to(store: AdapterStore) -> Callable[[Write], None]:
    """An ``Event.recorder`` that runs each write at once in its own unit of work of
    ``store`` (a handler called directly, outside a worker)."""

    def run(write: Write) -> None:
        with store.begin() as tx:
            write(tx)

    return run


# A handler gets an event and returns the events it causes, or raises RetryableError /
# PermanentError / InvalidMessage (hub.errors). Built once per worker; an ``aclose()`` it has
# is awaited when the worker stops.
Handler = Callable[[Event], Awaitable[Sequence[Envelope]]]
# An inbound call of the system (body, headers) as the canonical envelopes it stands for.
CallbackParser = Callable[
    [bytes, dict[str, str]], Sequence[Envelope] | Awaitable[Sequence[Envelope]]]


class Simulator(Protocol):
    """A running stand-in of a system (``hub.simulation.SimulatedSystem``) for tests and the
    demo: ``start()`` returns its base URL."""

    def start(self) -> str: ...

    def stop(self) -> None: ...


@dataclass
class AdapterContext:
    """What the core hands an adapter when it builds its worker or callback parser."""

    settings: Settings
    # The adapter's own settings: mappings/<name>/config.toml with the deployment's overrides;
    # its typed model reads them (AdapterConfig.from_context). A plain dict is taken as is.
    config: ConfigData = field(default_factory=ConfigData)
    # None: no store (a unit test); state then lives in memory.
    store: AdapterStore | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.config, ConfigData):
            self.config = ConfigData(self.config)


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
    make_callback: Callable[[AdapterContext], CallbackParser] | None = None
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
    # Build a simulator of the system (its keyword switches are the system's own).
    make_simulator: Callable[..., Simulator] | None = None
    # Status events of one dossier must be applied in order: single active consumer.
    ordered: bool = True
    # What else the adapter brings, by name: "cli" (a typer.Typer, or a function making one),
    # "jobs", "emits"... read by the parts of the hub that know the name.
    extra: Mapping[str, object] = field(default_factory=dict)


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
    settings: Settings, name: str, *, store: AdapterStore | None = None
) -> AdapterContext:
    """The context an adapter's worker or callback parser is built with."""
    return AdapterContext(
        settings=settings,
        config=load_config(settings.mappings_dir, name, overlay_dir(settings)),
        store=store,
    )

