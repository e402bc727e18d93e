"""The base of a JSON system's client over the hub's transport (``hub.transport``: failures,
masking, call policy and metrics): one ``Outbound`` built from the adapter's settings, and the
check of a reply against the system's contract. A subclass reads what is its system's own (its
reply codes, its checksum). A system that needs no more than an address and a call policy
(``HttpSystemConfig``) gets its calls from ``json_outbound`` alone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from hub.adapterconfig import AdapterConfig, HttpUrl
from hub.adapters import AdapterContext
from hub.contracts import Contract
from hub.errors import HubError, PermanentError, RetryableError
from hub.outbound import CallPolicy
from hub.transport import HttpTransport, Outbound, Said
from hub.transport.base import origin_of


class SystemClient:
    """``system``: the adapter's name (metrics, circuit, origin of errors); ``title`` names the
    system in messages ("the payment gateway"); ``explain`` reads its error replies."""

    def __init__(self, system: str, title: str, cfg: AdapterConfig, base_url: str,
                 contract: Contract, *, headers: Mapping[str, str] | None = None,
                 auth_hint: str = "", policy: CallPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.contract, self.origin = contract, origin_of(system)
        self.outbound = Outbound(
            HttpTransport(system, title, base_url=base_url, timeout=cfg.policy.timeout,
                          headers=headers, explain=self.explain, auth_hint=auth_hint,
                          transport=transport),
            policy or CallPolicy(system, cfg.policy))

    async def aclose(self) -> None:
        await self.outbound.aclose()

    def explain(self, doc: dict[str, Any]) -> Said | None:
        return None

    def refused(self, text: str, field: str, *, retry: bool = False) -> HubError:
        """The system refused a request: worth retrying as it is (``retry``: it said it is
        busy) or not; ``field`` holds its code."""
        if retry:
            return RetryableError(text, code="system.busy", field=field, origin=self.origin)
        return PermanentError(text, code="system.rejected", field=field, origin=self.origin)

    def url(self, reply: dict[str, Any], field: str, problem: str) -> str:
        """The http(s) address ``reply`` carries in ``field`` (where the citizen goes next);
        else ``PermanentError`` ``system.bad_reply``: ``problem``, with what it carried."""
        found = reply.get(field)
        if not isinstance(found, str) or not found.startswith(("http://", "https://")):
            raise PermanentError(f"{problem} ({found!r:.80})", code="system.bad_reply",
                                 field=field, origin=self.origin)
        return found

    def valid(self, kind: str, reply: dict[str, Any]) -> dict[str, Any]:
        """``reply``, when it keeps the system's ``kind`` contract; else ``PermanentError``."""
        self.contract.validate(kind, reply, error=PermanentError, code="system.bad_reply",
                               origin=self.origin)
        return reply


class HttpSystemConfig(AdapterConfig):
    """The settings of a JSON-over-HTTP system that needs no more: its address, and the
    ``[policy]`` table every adapter has."""

    base_url: HttpUrl


def json_outbound(ctx: AdapterContext, system: str, title: str) -> Outbound:
    """The calls of a JSON-over-HTTP system, from its adapter's configuration read as
    ``HttpSystemConfig``: the hub's transport with its one translation of failures, its
    masking, the call policy and the per-call metrics, none of it written by the adapter.
    ``system`` is the adapter's name, ``title`` names the system in messages."""
    cfg = HttpSystemConfig.from_context(ctx)
    transport = HttpTransport(system, title, base_url=cfg.base_url, timeout=cfg.policy.timeout)
    return Outbound(transport, CallPolicy(system, cfg.policy))
