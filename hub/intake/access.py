"""What an authenticated client may send: its access list (event types and agencies, default
deny) and the checks of it every door makes. Who the client is (credentials, tokens, the
connection's peer) is the HTTP layer's business (``hub.api.auth``); its ``ClientRegistry`` reads
the access lists from ``mappings/clients.toml`` and hands out these identities."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel

from hub import codes
from hub.errors import AccessDenied
from hub.intake.facts import EventFacts
from hub.model import Dossier


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """An authenticated upstream system and what it may send. Access-list entries are exact
    values, prefixes ending in ``*``, or ``*`` alone for anything; an empty set allows nothing."""

    system_id: str
    name: str
    allowed_types: frozenset[str]
    allowed_agencies: frozenset[str]
    # Its certificate is needed with its API key or bearer token, not instead of them.
    require_certificate: bool = False
    # The adapters whose callback (POST /v1/callbacks/<name>) it may call: exact names.
    allowed_callbacks: frozenset[str] = frozenset()

    def may_send(self, event_type: str) -> bool:
        return _matches(self.allowed_types, event_type)

    def may_call_back(self, system: str) -> bool:
        return system in self.allowed_callbacks

    def may_act_for(self, agency_code: str) -> bool:
        return _matches(self.allowed_agencies, agency_code)


def _matches(patterns: frozenset[str], value: str) -> bool:
    if value in patterns or "*" in patterns:
        return True
    return any(p.endswith("*") and value.startswith(p[:-1]) for p in patterns)


def authorize_type(client: ClientIdentity, event_type: str) -> None:
    if not client.may_send(event_type):
        raise AccessDenied(
            f"{client.system_id} may not send {event_type}; it may send "
            f"{_listing(client.allowed_types)}. Ask the hub's operator to extend its "
            "access list", field="type")


def authorize_callback(client: ClientIdentity, system: str) -> None:
    """Refuse unless the client's entry lists ``system`` in ``callbacks`` (default deny)."""
    if not client.may_call_back(system):
        allowed = _listing(client.allowed_callbacks).replace("nothing (no access configured)",
                                                             "none")
        raise AccessDenied(
            f"{client.system_id} may not call the callback of {system!r:.40}; the callbacks it "
            f"may call: {allowed}. Ask the hub's operator to add {system!r:.40} to its "
            "callbacks in the clients file", field="system")


def authorize_agency(client: ClientIdentity, agency_code: str | None,
                     field: str = "agency_code") -> None:
    if agency_code is None:
        if "*" in client.allowed_agencies:
            return
        raise AccessDenied(f"the message names no agency and {client.system_id} is not "
                           "allowed every agency; send the agency code", field=field)
    if not client.may_act_for(agency_code):
        raise AccessDenied(
            f"{client.system_id} may not act for agency {agency_code}; it may act for "
            f"{_listing(client.allowed_agencies)}. Ask the hub's operator to extend its "
            "access list", field=field)


def authorize_dossier(client: ClientIdentity, model: BaseModel, facts: EventFacts) -> None:
    """The client must also act for the agency of the dossier's own code, whatever agency the
    body names: a client of H56 must not create or touch ``000.00.00.H57-…`` (its timeline,
    its status) by writing H56 in ``agency_code``."""
    if facts.dossier_code is None:
        return
    agency = codes.parse_dossier(facts.dossier_code).agency.value
    if agency != facts.agency:
        authorize_agency(client, agency,
                         field="code" if isinstance(model, Dossier) else "dossier_code")


def _listing(patterns: Iterable[str]) -> str:
    items = sorted(patterns)
    return ", ".join(items) if items else "nothing (no access configured)"
