"""Inbound calls of external systems (a payment gateway's callback, a postal webhook), routed by
the system's registered name to its adapter's parser (``AdapterSpec.make_callback``). The core
names no system: whatever adapters are installed (``hub.adapters.discover()``) are callable.

A parser takes the raw body bytes and the headers, checks the call (its checksum, its
signature) and returns canonical envelopes, or raises a ``HubError``. The hub keeps them like
any accepted event (``IntakeService.accept_envelopes``)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from hub.adapters import AdapterContext, AdapterSpec, context_for
from hub.api.errors import NotFound
from hub.envelope import Envelope
from hub.errors import ConfigError

CallbackParser = Callable[[bytes, dict[str, str]], Any]
AdapterMap = Mapping[str, AdapterSpec]


class CallbackDispatcher:
    """``adapters`` is a mapping, or a function giving one (``hub.adapters.discover``) called at
    the first callback: an adapter that fails to load then refuses its callbacks (500
    ``server.config_invalid``) without keeping the intake of dossiers from starting."""

    def __init__(self, adapters: Mapping[str, AdapterSpec] | Callable[[], AdapterMap],
                 context: Callable[[AdapterSpec], AdapterContext]) -> None:
        self._source = adapters
        self._adapters: dict[str, AdapterSpec] | None = None
        self._context = context
        self._parsers: dict[str, CallbackParser] = {}

    def _specs(self) -> dict[str, AdapterSpec]:
        if self._adapters is None:
            found = self._source() if callable(self._source) else self._source
            self._adapters = {name: spec for name, spec in found.items()
                              if spec.make_callback is not None}
        return self._adapters

    @property
    def systems(self) -> list[str]:
        return sorted(self._specs())

    def parser(self, system: str) -> CallbackParser:
        parser = self._parsers.get(system)
        if parser is not None:
            return parser
        spec = self._specs().get(system)
        if spec is None or spec.make_callback is None:
            known = ", ".join(self.systems) or "none"
            raise NotFound(f"no adapter named {system!r:.40} takes callbacks; systems that do: "
                           f"{known}", code="client.unknown_system", field="system")
        parser = spec.make_callback(self._context(spec))
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


def check_envelopes(system: str, result: Any) -> list[Envelope]:
    if isinstance(result, Envelope):
        result = [result]
    if not isinstance(result, list | tuple) or not all(isinstance(e, Envelope) for e in result):
        raise ConfigError(
            f"the callback parser of adapter {system!r} returned {type(result).__name__}, not "
            "a list of hub.envelope.Envelope; fix the adapter")
    return list(result)


def context_factory(settings: Any, *, signer: Any, store: Any,
                    events_exchange: str) -> Callable[[AdapterSpec], AdapterContext]:
    def make(spec: AdapterSpec) -> AdapterContext:
        ctx = context_for(settings, spec.name, signer=signer, store=store)
        ctx.events_exchange = events_exchange
        return ctx

    return make
