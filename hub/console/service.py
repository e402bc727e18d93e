"""The console's service layer: what the API, the CLI and the web page call. Each action is
checked against the operator's role and written to the audit trail with its reason, in the
transaction that changes the dead letter.

Replay: the dead letter's original bytes and signature go back to the work queue of its
destination (or another one), the partition of its dossier, with a fresh attempt counter and
``lt-replay-of`` naming the row. The copy keeps the original message id: if it is replayed
twice by mistake, the destination's processed ids absorb the second copy (same id, same
bytes), and the row, marked replayed, refuses a second replay. The broker's confirm comes
before the row is marked, so a replay that could not be published leaves the row parked.

Edit and resubmit: the operator's corrected ``data`` replaces the envelope's, the hub signs the
result as itself (a relay; the original source stays the envelope's), the row keeps the
original bytes and is marked edited, and the audit entry holds the diff (masked).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hub import headers as h
from hub.broker.messages import Outgoing
from hub.broker.names import slot_of
from hub.console.masking import mask
from hub.envelope import Envelope
from hub.errors import AccessDenied, ClientError, Conflict, HubError, InvalidMessage, NotFound
from hub.store import Store
from hub.store import operators as ops
from hub.store.operators import AuditEntry, DeadLetter

ROLES = ("viewer", "operator", "admin")
ACTING_ROLES = frozenset({"operator", "admin"})
Publish = Callable[[Outgoing], Awaitable[None]]
# Headers of a parked copy that a replay drops: its failures belong to the dead letter.
_FAILURE_HEADERS = frozenset({h.ATTEMPT, h.LAST_ERROR, h.RETURN_TO, h.REASON, h.REASON_CODE,
                              h.PARKED_AT, h.PARKED_BY, h.HISTORY, h.HELD_BEHIND, h.REPLAY_OF})


@dataclass(frozen=True, slots=True)
class Operator:
    username: str
    role: str

    @property
    def may_act(self) -> bool:
        return self.role in ACTING_ROLES


@dataclass(frozen=True, slots=True)
class Filters:
    state: str | None = "parked"
    kind: str | None = None
    reason_code: str | None = None
    source: str | None = None
    destination: str | None = None
    type: str | None = None
    agency: str | None = None
    dossier_code: str | None = None
    older_than_minutes: float | None = None
    newer_than_minutes: float | None = None

    def store_filters(self, now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        out: dict[str, Any] = {k: v for k, v in asdict(self).items()
                               if v not in (None, "") and not k.endswith("_minutes")}
        if self.older_than_minutes is not None:
            out["parked_before"] = now - timedelta(minutes=self.older_than_minutes)
        if self.newer_than_minutes is not None:
            out["parked_after"] = now - timedelta(minutes=self.newer_than_minutes)
        return out


@dataclass(frozen=True, slots=True)
class Page:
    items: list[DeadLetter]
    total: int
    counts: dict[str, int]
    limit: int
    offset: int


@dataclass(frozen=True, slots=True)
class Inspection:
    letter: DeadLetter
    envelope: dict[str, Any] | None  # the body as JSON (masked unless the role sees it)
    masked: bool
    signature: str  # "valid: signed by ..." or what is wrong with it
    timeline: list[dict[str, Any]]
    replays: list[int]  # dead letters that came back from replaying this one


@dataclass
class Outcome:
    id: int
    ok: bool
    detail: str
    message_id: str | None = None


@dataclass
class ConsoleService:
    settings: Any
    store: Store
    publish: Publish | None = None
    signer: Any = None  # the hub's signer (edit and resubmit)
    verifier: Any = None  # verifier of the hub's queues (signature status)
    topology: Any = None  # hub.broker.topology.Topology: where a destination's work queues are
    _next_slot: float = field(default=0.0, repr=False)

    # -- reading ------------------------------------------------------------------------------

    def browse(self, filters: Filters, *, limit: int = 50, offset: int = 0) -> Page:
        where = filters.store_filters()
        with self.store.engine.connect() as conn:
            items = ops.list_dead_letters(conn, limit=limit, offset=offset, **where)
            total = ops.count_dead_letters(conn, **where)
            counts = ops.counts_by_kind(conn, **{k: v for k, v in where.items()
                                                 if k != "kind"})
        return Page(items, total, counts, limit, offset)

    def get(self, dead_letter_id: int) -> DeadLetter:
        letter = self.store.dead_letter(dead_letter_id)
        if letter is None:
            raise NotFound(f"no dead letter {dead_letter_id}; list them with GET "
                           "/v1/console/dead-letters", field="id")
        return letter

    def sees_personal_data(self, who: Operator) -> bool:
        return who.role in set(self.settings.console_personal_data_roles)

    def inspect(self, dead_letter_id: int, who: Operator) -> Inspection:
        letter = self.get(dead_letter_id)
        doc: dict[str, Any] | None
        try:
            doc = json.loads(letter.body)
        except ValueError:
            doc = None
        masked = not self.sees_personal_data(who)
        if doc is not None and masked:
            doc = mask(doc)
        timeline = []
        if letter.dossier_code:
            for e in self.store.timeline(letter.dossier_code):
                timeline.append({"at": e.at.isoformat(), "type": e.event_type,
                                 "source": e.source, "message_id": e.message_id,
                                 "summary": e.summary})
        with self.store.engine.connect() as conn:
            from sqlalchemy import select

            from hub.store.tables import dead_letters

            replays = [int(r) for r in conn.execute(
                select(dead_letters.c.id).where(dead_letters.c.replay_of == letter.id)
                .order_by(dead_letters.c.id)).scalars()]
        return Inspection(letter, doc, masked, self.signature_status(letter), timeline, replays)

    def signature_status(self, letter: DeadLetter) -> str:
        token = letter.headers.get(h.SIGNATURE)
        if not isinstance(token, str):
            return "missing: the message carries no lt-signature"
        if self.verifier is None:
            return "not checked: no verifier configured"
        try:
            env = Envelope.from_bytes(letter.body)
            key = self.verifier.verify(letter.body, token, env, attempt=1)
        except (HubError, ValueError) as exc:
            code = getattr(exc, "code", "client.unparseable")
            message = getattr(exc, "message", str(exc))
            return f"invalid: {code}: {message}"
        return f"valid: signed by {getattr(key, 'system_id', key)}"

    def audit(self, *, limit: int = 100, offset: int = 0,
              target: str | None = None) -> list[AuditEntry]:
        with self.store.engine.connect() as conn:
            return ops.list_audit(conn, limit=limit, offset=offset, target=target)

    # -- acting -------------------------------------------------------------------------------

    def _may_act(self, who: Operator) -> None:
        if not who.may_act:
            raise AccessDenied(f"operator {who.username} has the role {who.role}, which may "
                               "only look; replay, edit and discard need operator or admin",
                               field="role")

    def _work_queue(self, destination: str, letter: DeadLetter) -> str:
        if self.topology is None:
            raise HubError("the console has no topology to find work queues in",
                           code="server.config_invalid")
        try:
            queues = self.topology.work_queues(destination)
        except HubError:
            known = ", ".join(sorted(d.name for d in self.topology.destinations))
            raise ClientError(f"no destination named {destination!r}; destinations: {known}",
                              code="client.unknown_destination", field="to") from None
        slot = letter.headers.get(h.SLOT)
        if not isinstance(slot, int):
            slot = slot_of(letter.dossier_code or letter.message_id)
        return str(queues[slot % len(queues)])

    async def _pace(self) -> None:
        """At most console_replay_rate publishes a second, across this service's callers."""
        now = time.monotonic()
        wait = self._next_slot - now
        self._next_slot = max(now, self._next_slot) + 1.0 / self.settings.console_replay_rate
        if wait > 0:
            await asyncio.sleep(wait)

    async def _send(self, outgoing: Outgoing) -> None:
        if self.publish is None:
            raise HubError("the console has no broker publisher", code="server.config_invalid")
        await self._pace()
        await self.publish(outgoing)

    async def replay(self, dead_letter_id: int, who: Operator, *, to: str | None = None,
                     why: str = "") -> Outcome:
        self._may_act(who)
        letter = self.get(dead_letter_id)
        if letter.state != "parked":
            raise Conflict(f"dead letter {letter.id} is {letter.state} already (by "
                           f"{letter.resolved_by}); a replayed message is not sent twice",
                           field="id")
        destination = to or letter.destination
        if not destination:
            raise ClientError(f"dead letter {letter.id} has no destination (it was "
                              f"{letter.kind}); name one with 'to'", code="client.missing_field",
                              field="to")
        queue = self._work_queue(destination, letter)
        headers = {k: v for k, v in letter.headers.items()
                   if k not in _FAILURE_HEADERS and not k.startswith("x-")}
        headers[h.ATTEMPT] = 0
        headers[h.REPLAY_OF] = letter.id
        await self._send(Outgoing(body=letter.body, exchange="", routing_key=queue,
                                  message_id=letter.message_id, type=letter.type or "",
                                  headers=headers, app_id=letter.source))
        resolution = {"action": "replay", "to": destination, "queue": queue}
        with self.store.begin() as tx:
            if not ops.resolve_dead_letter(tx.connection, letter.id, "replayed", by=who.username,
                                           resolution=resolution):
                raise Conflict(f"dead letter {letter.id} was resolved meanwhile; the copy "
                               "just sent is absorbed by the destination's processed ids",
                               field="id")
            tx.audit_add(who.username, "replay", f"dead-letter:{letter.id}",
                         {"message_id": letter.message_id, "to": destination,
                          "queue": queue}, why=why or None)
        return Outcome(letter.id, True, f"replayed to {destination}", letter.message_id)

    async def replay_many(self, ids: Iterable[int], who: Operator, *, to: str | None = None,
                          why: str = "", progress: Callable[[Outcome], None] | None = None,
                          ) -> list[Outcome]:
        self._may_act(who)
        outcomes = []
        for i in ids:
            try:
                outcome = await self.replay(i, who, to=to, why=why)
            except HubError as exc:
                outcome = Outcome(i, False, f"{exc.code}: {exc.message}")
            outcomes.append(outcome)
            if progress is not None:
                progress(outcome)
        return outcomes

    def matching_ids(self, filters: Filters, limit: int = 100_000) -> list[int]:
        where = filters.store_filters()
        with self.store.engine.connect() as conn:
            return [d.id for d in ops.list_dead_letters(conn, limit=limit, **where)]

    async def edit(self, dead_letter_id: int, who: Operator, data: Any, *,
                   why: str) -> Outcome:
        self._may_act(who)
        if not why.strip():
            raise ClientError("say why the message is edited (why)", code="client.missing_field",
                              field="why")
        letter = self.get(dead_letter_id)
        if letter.state != "parked":
            raise Conflict(f"dead letter {letter.id} is {letter.state} already", field="id")
        if not letter.destination:
            raise ClientError(f"dead letter {letter.id} has no destination", field="to",
                              code="client.missing_field")
        try:
            original = Envelope.from_bytes(letter.body)
        except (HubError, ValueError) as exc:
            raise ClientError(f"dead letter {letter.id} is not an envelope ({exc}); it can be "
                              "discarded, not edited", field="body") from None
        if self.signer is None:
            raise HubError("the console has no signer", code="server.config_invalid")
        corrected = replace(original, data=data)
        try:
            # What a receiver will read: the corrected envelope must parse as one.
            Envelope.from_bytes(corrected.to_bytes())
        except (HubError, ValueError) as exc:
            raise InvalidMessage(f"the corrected message is not a valid envelope: {exc}",
                                 code="client.schema_invalid", field="data") from None
        queue = self._work_queue(letter.destination, letter)
        outgoing = Outgoing.signed(corrected, self.signer, "", routing_key=queue)
        outgoing.headers[h.EDITED] = who.username
        outgoing.headers[h.REPLAY_OF] = letter.id
        changes = diff(original.data, data)
        await self._send(outgoing)
        with self.store.begin() as tx:
            if not ops.resolve_dead_letter(
                    tx.connection, letter.id, "edited", by=who.username,
                    resolution={"action": "edit", "to": letter.destination, "queue": queue,
                                "changes": len(changes)}):
                raise Conflict(f"dead letter {letter.id} was resolved meanwhile", field="id")
            tx.audit_add(who.username, "edit", f"dead-letter:{letter.id}",
                         {"message_id": letter.message_id, "to": letter.destination,
                          "diff": [mask(c) for c in changes]}, why=why)
        return Outcome(letter.id, True, f"edited ({len(changes)} changes), re-signed by the "
                       f"hub and sent to {letter.destination}", letter.message_id)

    def discard(self, dead_letter_id: int, who: Operator, *, why: str) -> Outcome:
        self._may_act(who)
        if not why.strip():
            raise ClientError("say why the message is discarded (why)",
                              code="client.missing_field", field="why")
        letter = self.get(dead_letter_id)
        with self.store.begin() as tx:
            if not ops.resolve_dead_letter(tx.connection, letter.id, "discarded",
                                           by=who.username, resolution={"action": "discard"}):
                raise Conflict(f"dead letter {letter.id} is {letter.state} already", field="id")
            tx.audit_add(who.username, "discard", f"dead-letter:{letter.id}",
                         {"message_id": letter.message_id}, why=why)
        return Outcome(letter.id, True, "discarded", letter.message_id)


def diff(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """What changed between two JSON values, as {path, before, after} per leaf."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        out: list[dict[str, Any]] = []
        for key in sorted(set(before) | set(after), key=str):
            sub = f"{path}/{key}"
            if key not in before:
                out.append({"path": sub, "before": None, "after": after[key]})
            elif key not in after:
                out.append({"path": sub, "before": before[key], "after": None})
            else:
                out += diff(before[key], after[key], sub)
        return out
    if before != after:
        return [{"path": path or "/", "before": before, "after": after}]
    return []
