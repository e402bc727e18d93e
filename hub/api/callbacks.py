"""Inbound calls of external systems (a payment gateway's callback, a postal webhook, a
province's status updates), routed by the system's registered name to its adapter's parser
(``AdapterSpec.make_callback``). The core names no system: whatever adapters are installed
(``hub.adapters.discover()``) are callable.

Every call is admitted before its body is read (``CallbackDispatcher.admit``), in one of two
ways, as the adapter declares (``AdapterSpec.callback_secrets``):

- by default the caller is a client of the hub: the same registry as the intake (API key,
  bearer token, client certificate from a trusted TLS terminator), whose entry lists the
  adapter in ``callbacks`` (default deny); once the parser has run, every envelope it made
  must be for an agency that client may act for (``check_agencies``), else the whole call is
  refused and nothing of it kept;
- a system that proves its calls itself (a checksum made with a shared secret, a token) is
  checked by its parser, and the hub keeps the door shut (503 ``server.secret_missing``, naming
  the environment variable) while any secret the adapter needs is unset; at start-up it logs a
  warning for each such door.

A parser takes the raw body bytes and the headers, checks the call (its checksum, its
signature) and returns canonical envelopes, or raises a ``HubError``. The hub keeps them like
any accepted event (``IntakeService.accept_envelopes``)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hub import codes
from hub.adapters import (
    AdapterContext,
    AdapterSpec,
    AdapterStore,
    CallbackParser,
    context_for,
    missing_secrets,
)
from hub.api.auth import ClientIdentity, ClientRegistry, authorize_callback
from hub.api.metrics import note_door
from hub.envelope import Envelope
from hub.errors import AccessDenied, ConfigError, HubError, NotFound, SecretMissing
from hub.settings import Settings

log = logging.getLogger(__name__)

AdapterMap = Mapping[str, AdapterSpec]


@dataclass(frozen=True, slots=True)
class Admitted:
    """A call let in: its system, and the client that made it (None when the call carries its
    own proof, which the adapter's parser checks)."""

    system: str
    client: ClientIdentity | None

    @property
    def limit_key(self) -> str:
        """The rate-limit bucket: the client's own (shared with its intake requests), or the
        system's when the caller is known only by its proof."""
        return self.client.system_id if self.client is not None else f"callback:{self.system}"


class CallbackDispatcher:
    """``adapters`` is a mapping, or a function giving one (``hub.adapters.discover``). The
    adapters are looked at once when the dispatcher is made, to warn of callbacks shut for want
    of a secret; an adapter that fails to load then is tried again at the first callback, and
    refuses its callbacks (500 ``server.config_invalid``) without keeping the intake of
    dossiers from starting."""

    def __init__(self, adapters: Mapping[str, AdapterSpec] | Callable[[], AdapterMap],
                 context: Callable[[AdapterSpec], AdapterContext]) -> None:
        self._source = adapters
        self._adapters: dict[str, AdapterSpec] | None = None
        self._context = context
        self._contexts: dict[str, AdapterContext] = {}
        self._secret_names: dict[str, list[str]] = {}
        self._parsers: dict[str, CallbackParser] = {}
        self.warn_unconfigured()

    def _specs(self) -> dict[str, AdapterSpec]:
        if self._adapters is None:
            found = self._source() if callable(self._source) else self._source
            self._adapters = {name: spec for name, spec in found.items()
                              if spec.make_callback is not None}
        return self._adapters

    @property
    def systems(self) -> list[str]:
        return sorted(self._specs())

    def _spec(self, system: str) -> AdapterSpec:
        spec = self._specs().get(system)
        if spec is None:
            # The installed adapters are not listed: a caller learns nothing of the hub's
            # systems by guessing names.
            raise NotFound(f"no adapter named {system!r:.40} takes callbacks at this hub; call "
                           "/v1/callbacks/<name> with the name of your system's adapter, as "
                           "the hub's operator gave it", code="client.unknown_system",
                           field="system")
        return spec

    def _ctx(self, spec: AdapterSpec) -> AdapterContext:
        ctx = self._contexts.get(spec.name)
        if ctx is None:
            ctx = self._contexts[spec.name] = self._context(spec)
        return ctx

    def secret_names(self, system: str) -> list[str] | None:
        """The environment variables the system's callback needs, or None when its callers
        authenticate as clients of the hub."""
        spec = self._spec(system)
        if spec.callback_secrets is None:
            return None
        names = self._secret_names.get(system)
        if names is None:
            names = list(spec.callback_secrets(self._ctx(spec)))
            self._secret_names[system] = names
        return names

    def missing(self, system: str) -> list[str]:
        """The secrets of the system's callback that are not configured (empty: none missing,
        or none needed)."""
        names = self.secret_names(system)
        if names is None:
            return []
        # An adapter that says it proves its calls itself but names no secret proves nothing.
        return missing_secrets(names or [""])

    def warn_unconfigured(self) -> None:
        """Log a warning for each callback that refuses every call for want of its secret."""
        try:
            systems = self.systems
        except HubError as exc:
            self._adapters = None  # tried again at the first callback, which then fails
            log.error("callbacks: the adapters could not be loaded: %s", exc)
            return
        for system in systems:
            try:
                missing = self.missing(system)
            except HubError as exc:
                log.error("callbacks: the callback of %s is misconfigured: %s", system, exc)
                continue
            if missing:
                log.warning("callbacks: POST /v1/callbacks/%s refuses every call (503 %s) "
                            "until %s", system, SecretMissing.code, _what_opens(system, missing))

    def admit(self, system: str, headers: Mapping[str, str],
              registry: ClientRegistry) -> Admitted:
        """Let the call in or refuse it, from its headers alone (the body is not read yet):
        404 for a system that takes no callbacks, 401/403 for a caller that is not a client
        allowed this callback, 503 for a callback whose secret is not configured."""
        self._spec(system)
        # Counted and logged as this system's door: a known adapter's name, a bounded label.
        note_door(f"callback:{system}")
        names = self.secret_names(system)
        if names is None:
            client = registry.authenticate(headers)
            authorize_callback(client, system)
            return Admitted(system, client)
        missing = self.missing(system)
        if missing:
            raise SecretMissing(
                f"the callback of {system} is shut: the secret its calls are checked with is "
                f"not configured. It opens when {_what_opens(system, missing)}",
                field="system")
        return Admitted(system, None)

    def parser(self, system: str) -> CallbackParser:
        parser = self._parsers.get(system)
        if parser is not None:
            return parser
        spec = self._spec(system)
        assert spec.make_callback is not None  # _specs keeps only adapters with one
        parser = spec.make_callback(self._ctx(spec))
        self._parsers[system] = parser
        return parser

    async def parse(self, system: str, body: bytes, headers: dict[str, str]) -> list[Envelope]:
        """The envelopes the system's call stands for."""
        parser = self.parser(system)
        if inspect.iscoroutinefunction(parser):
            result = await parser(body, headers)
        else:
            # A parser may read the store or files: keep the event loop free.
            result = await asyncio.to_thread(parser, body, headers)
            if inspect.isawaitable(result):
                result = await result
        return check_envelopes(system, result)


def _what_opens(system: str, missing: Sequence[str]) -> str:
    names = [name for name in missing if name]
    if len(names) < len(missing):
        return (f"the configuration of adapter {system} (mappings/{system}/config.toml, or "
                "the deployment's override) names the environment variable holding its "
                "secret, which it does not, and the hub's operator sets that variable")
    return (f"the hub's operator sets the environment variable {', '.join(names)} for the hub "
            "and restarts it")


def check_agencies(admitted: Admitted, envelopes: Sequence[Envelope]) -> None:
    """Refuse the whole call unless the client may act for the agency of every envelope: the
    envelope's ``agency`` and the agency of its dossier (``subject``), both when they differ.
    An envelope of no agency needs a client allowed every agency. Nothing to check for a call
    that carries its own proof (no client)."""
    client = admitted.client
    if client is None:
        return
    for n, env in enumerate(envelopes):
        agencies = [env.agency] if env.agency else []
        dossier = _dossier_agency(env.subject)
        if dossier is not None and dossier not in agencies:
            agencies.append(dossier)
        if not agencies and "*" not in client.allowed_agencies:
            raise AccessDenied(
                f"event {n} of the call ({env.type}) names no agency, and {client.system_id} "
                "is not allowed every agency; nothing of the call was kept", field="agency")
        for agency in agencies:
            if not client.may_act_for(agency):
                allowed = ", ".join(sorted(client.allowed_agencies)) or "none"
                raise AccessDenied(
                    f"{client.system_id} may not act for agency {agency} (event {n} of the "
                    f"call, dossier {env.subject!r:.60}); it may act for {allowed}. Nothing "
                    "of the call was kept; send updates of those agencies' dossiers only, or "
                    "ask the hub's operator to extend its access list", field="agency")


def _dossier_agency(subject: str | None) -> str | None:
    if not subject:
        return None
    try:
        return codes.parse_dossier(subject).agency.value
    except HubError:
        return None


def check_envelopes(system: str, result: Any) -> list[Envelope]:
    if isinstance(result, Envelope):
        result = [result]
    if not isinstance(result, list | tuple) or not all(isinstance(e, Envelope) for e in result):
        raise ConfigError(
            f"the callback parser of adapter {system!r} returned {type(result).__name__}, not "
            "a list of hub.envelope.Envelope; fix the adapter")
    return list(result)


def context_factory(settings: Settings, *,
                    store: AdapterStore | None) -> Callable[[AdapterSpec], AdapterContext]:
    def make(spec: AdapterSpec) -> AdapterContext:
        return context_for(settings, spec.name, store=store)

    return make
