"""A system's reports about the requests an adapter recorded: pushed by a callback, or the
system's reply when the hub asks (reconciliation). A report is judged against its record by
the adapter's rules and its table of transitions (``hub.transitions``, ``by_table``): applied,
its event recorded to be published; a repeat, answered with the event recorded for it before;
or parked for an operator (``hub.parked``) with what the record expected, nothing published.
``ReportStore`` applies a verdict in the write that locked the record, and notes a callback in
the adapter's call log (``hub.calllog``) whatever became of it, so the log, the record and
its events never disagree. A report that names no record of this hub is parked apart."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Generic, Protocol, TypeVar

import sqlalchemy as sa
import typer
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from hub import parked as parking
from hub import tomlmap
from hub.adapters import AdapterContext
from hub.adaptertables import writing
from hub.calllog import note_call
from hub.envelope import Envelope
from hub.errors import ClientError
from hub.parked import Parked, ParkedReport
from hub.statestore import RecordStore
from hub.transitions import Transitions

R = TypeVar("R", bound="Stated")
R_co = TypeVar("R_co", covariant=True)
B = TypeVar("B", bound="Recorded")

CALLBACK = "callback"  # a report's source when the system pushed it


@dataclass(frozen=True, kw_only=True)
class Report:
    """What the system says about one of its transactions for the record ``reference``.
    ``facts``: its message as received, kept when the report is parked; ``digest``: its
    message's, by which a resend is known; ``source``: ``CALLBACK`` or the question's name;
    ``peer``: the address a callback came from."""

    reference: str
    transaction_id: str
    facts: Mapping[str, Any]
    digest: str
    source: str
    peer: str | None = None


class Stated(Protocol):
    """A record whose state moves by a table of transitions."""

    @property
    def status(self) -> str: ...

    @property
    def dossier_code(self) -> str: ...

    @property
    def agency(self) -> str | None: ...


class Recorded(Protocol):
    """The event recorded for one transaction of a record."""

    @property
    def event_id(self) -> str: ...

    @property
    def event(self) -> str: ...


@dataclass(frozen=True)
class Disagreement:
    """A fact of a report that is not its record's: the system's field and what differs."""

    field: str
    message: str


def content_digest(doc: Mapping[str, Any]) -> str:
    """What a report read from a parsed reply (not a pushed body, known by its bytes) is known
    by: the SHA-256 of its JSON with keys sorted, so the same facts make the same digest."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class FactCheck(tomlmap.Table):
    """A fact of a report held against its record: its name in both (``fact``), the system's
    ``field`` for it, read as text or (``number``) as a whole number, which a system may send
    as a string of digits; and the ``message`` saying how they differ, a template given
    ``said`` (the report's value) and the facts the record expected."""

    fact: str
    field: str
    message: str
    number: bool = False


class ReportWords(tomlmap.Table):
    """An adapter's declared judgement of reports (``mappings/<name>/reports.toml``): the
    system's field naming its ``transaction``, the facts checked, in order, and the reason each
    parking code gives when no differing fact does."""

    transaction: str = ""
    facts: tuple[FactCheck, ...]
    parked: dict[str, str]

    @classmethod
    def load(cls, path: Path) -> ReportWords:
        return tomlmap.load(cls, path)

    def said(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """What the system's message ``doc`` says, by fact: each checked fact (None when the
        message does not carry it) and ``transaction_id`` ("" when it names none). Pure."""
        facts = {check.fact: None if doc.get(check.field) is None
                 else (int if check.number else str)(doc[check.field]) for check in self.facts}
        return {**facts, "transaction_id": str(doc.get(self.transaction) or "")}

    def disagreement(self, report: object, expected: Mapping[str, Any]) -> Disagreement | None:
        """The first checked fact of ``report`` that it states (not None) and that is not
        ``expected``'s, or None. Pure."""
        for check in self.facts:
            said = getattr(report, check.fact)
            if said is not None and said != expected[check.fact]:
                return Disagreement(check.field, check.message.format(said=said, **expected))
        return None

    def reason(self, code: str, field: str, **facts: Any) -> Parked:
        """A report parked with ``code``, its reason worded from ``facts``."""
        return Parked(code, self.parked[code].format(**facts), field)

    def expected(self, record: Stated, **given: Any) -> dict[str, Any]:
        """What a report about ``record`` is held against, and kept with when parked: the
        record's value of each checked fact (``given``: those it does not keep itself), its
        status and its dossier."""
        facts = {check.fact: given[check.fact] if check.fact in given
                 else getattr(record, check.fact) for check in self.facts}
        return {**facts, "status": record.status, "dossier_code": record.dossier_code}

    def verdict(self, table: Transitions, record: Stated, outcome: str, mismatch: str,
                event: Envelope | None, expected: Mapping[str, Any],
                problem: Disagreement | None, field: str, **facts: Any) -> Verdict:
        """The verdict ``table`` gives a report about ``record`` (``by_table``) that states
        ``outcome``, or ``mismatch`` when one of its facts differs (``problem``). Parked, it is
        worded by the problem, else by ``[parked]`` given ``facts``, at ``field``. Pure."""
        return by_table(table, record.status, mismatch if problem else outcome, event,
                        lambda code: Parked(code, problem.message, problem.field) if problem
                        else self.reason(code, field, **facts), expected)


@dataclass(frozen=True)
class Verdict:
    """What becomes of a report: the record's state after, and one of: ``record`` its event
    (applied), ``again`` the event recorded for the same transaction before (a repeat),
    ``parked`` with what the record ``expected``, or nothing at all (``note`` says why)."""

    state: str
    record: Envelope | None = None
    again: Recorded | None = None
    parked: Parked | None = None
    expected: Mapping[str, Any] = field(default_factory=dict)
    note: str | None = None


@dataclass(frozen=True)
class Settled:
    """What became of a report: ``event`` (JSON) to publish, or None; the record's state
    after; ``parked`` when the report was not applied and is kept for an operator;
    ``repeat`` when it is a report already applied (its stored event is returned again)."""

    event: str | None
    state: str
    parked: Parked | None = None
    repeat: bool = False


def by_table(table: Transitions, state: str, outcome: str, event: Envelope | None,
             parked: Callable[[str], Parked], expected: Mapping[str, Any]) -> Verdict:
    """The verdict ``table`` gives ``outcome`` in ``state``: applied with ``event`` (built by
    the caller when the report's facts agree with the record), or parked with the reason
    ``parked`` gives the entry's code. Pure."""
    step = table.step(state, outcome)
    if step.publish:
        if event is None:
            raise ValueError(f"{table.what} took {outcome!r} and publishes, but no event was "
                             "built for it; build it when the report agrees with the record")
        return Verdict(step.to, record=event)
    assert step.park is not None  # an outcome of a report publishes or parks
    return Verdict(step.to, parked=parked(step.park), expected=expected)


class ReportBook(Protocol[R_co]):
    """What an adapter's port keeps of reports about its records, whatever else it keeps."""

    def get(self, reference: str) -> R_co | None: ...

    def step(self, reference: str, outcome: str, now: datetime) -> str | None:
        """Move the record by ``outcome`` (its table of transitions); its state after, or None
        when the table has no such move from the state it is in."""

    def park(self, report: Report, parked: Parked, now: datetime, *,
             expected: Mapping[str, Any]) -> None:
        """Park a report that names no record of this hub (a reference it never made, another
        account), with what the hub expected instead. The same report again is counted on its
        row."""

    def parked_reports(self, *, reference: str | None = None,
                       limit: int = 100) -> list[ParkedReport]: ...


def parked_command(book_of: Callable[[AdapterContext], ReportBook[Any]],
                   doc: str) -> Callable[..., str]:
    """The operator's command that lists the reports parked in the book ``book_of`` reaches
    (``AdapterSpec.extra["admin"]``, ``hub.cli.adaptercommands``), one JSON object a line, most
    recently seen first; ``doc``, its help, says what they are."""

    def parked(
        ctx: AdapterContext,
        reference: Annotated[str | None, typer.Option(
            help="only the reports of this record")] = None,
        limit: Annotated[int, typer.Option(min=1, help="at most this many, latest first")] = 100,
    ) -> str:
        found = book_of(ctx).parked_reports(reference=reference, limit=limit)
        return "\n".join(json.dumps(p.to_dict(), ensure_ascii=False, default=str) for p in found)

    parked.__doc__ = doc
    return parked


@dataclass(frozen=True)
class Desk:
    """Where an adapter tells its operator of the reports it parks: on its ``log``, naming
    its records (``what``: "ticket") and the ``command`` that lists them."""

    log: logging.Logger
    what: str
    command: str

    def warn(self, report: Report, parked: Parked, state: str | None) -> None:
        """A report is parked; ``state``: its record's after, None when it names none."""
        self.log.warning(
            "%s %s: the system's %s (transaction %s, from %s) is parked for an operator (%s): "
            "%s; the %s stays %s. See `%s`.", self.what, report.reference, report.source,
            report.transaction_id, report.peer or "-", parked.code, parked.reason, self.what,
            state or "unknown to this hub", self.command)

    def refuse(self, book: ReportBook[Any], report: Report, parked: Parked, now: datetime,
               expected: Mapping[str, Any], error: type[ClientError]) -> ClientError:
        """Park a pushed report that names no record of this hub; the error that refuses it."""
        book.park(report, parked, now, expected=expected)
        self.warn(report, parked, None)
        return error(f"{parked.reason}; kept for an operator", code=parked.code,
                     field=parked.field)


class ReportStore(RecordStore[R], Generic[R, B]):
    """The reports' side of an adapter's state on SQL: ``records`` keyed by ``reference``, whose
    ``status`` moves by ``transitions``; ``events`` (``hub.statestore.event_columns``) keyed by
    ``reference`` and ``transaction_id``, read back as ``before_type`` (``Recorded``);
    ``parked_reports_table`` (``hub.parked.parked_table``) and ``calls``
    (``hub.calllog.call_log_table``)."""

    transitions: Transitions
    before_type: type[B]
    parked_reports_table: sa.Table
    calls: sa.Table

    def get(self, reference: str) -> R | None:
        return self.by("reference", reference)

    def step(self, reference: str, outcome: str, now: datetime) -> str | None:
        """Move the record by ``outcome``; its state after, or None when the table has no such
        move from the state it is in (or there is no such record)."""
        with writing(self.engine) as conn:
            found = self.by("reference", reference, conn)
            state = self.transitions.stepped(found.status, outcome) if found else None
            if state is not None:
                self.update(self.records, self.records.c.reference == reference, now, conn,
                            status=state)
        return state

    def judged(self, report: Report, judge: Callable[[R, B | None], Verdict],
               now: datetime, *, emitted: bool, **recorded: Any) -> Settled:
        """Judge ``report`` against its record (``before``: the event recorded for the same
        transaction) and apply the verdict (``apply``) in one transaction, the record locked.
        LookupError when no record has the report's reference (``park`` it)."""
        with writing(self.engine) as conn:
            found = self.by("reference", report.reference, conn)
            if found is None:
                raise LookupError(f"no record {report.reference!r} in {self.records.name}; park "
                                  "the report instead")
            before = self.first(self.before_type, sa.select(self.events).where(
                self.events.c.reference == report.reference,
                self.events.c.transaction_id == report.transaction_id), conn)
            return self.apply(conn, report, judge(found, before), found, found.status, now,
                              emitted=emitted, **recorded)

    def apply(self, conn: Connection, report: Report, verdict: Verdict, record: Stated,
              state: str, now: datetime, *, emitted: bool, **recorded: Any) -> Settled:
        """Apply ``verdict`` on ``report`` about ``record`` (in ``state``, its row locked by
        ``conn``): the state moved, the event recorded with ``recorded`` (its other columns),
        or the report parked; a callback noted whatever became of it."""
        if verdict.state != state:
            self.update(self.records, self.records.c.reference == report.reference, now, conn,
                        status=verdict.state)
        if verdict.record is not None:
            body = self.keep_event(conn, verdict.record, report.source, now, emitted=emitted,
                                   reference=report.reference,
                                   transaction_id=report.transaction_id, **recorded)
            self._note(conn, report, now, event_id=verdict.record.id)
            return Settled(body, verdict.state)
        if verdict.parked is not None:
            self._park(conn, report, verdict.parked, now, record, state, verdict.state,
                       verdict.expected)
            return Settled(None, verdict.state, verdict.parked)
        again = verdict.again
        self._note(conn, report, now, event_id=again.event_id if again else None,
                   reason=verdict.note)
        return Settled(again.event if again else None, verdict.state, repeat=True)

    def park(self, report: Report, parked: Parked, now: datetime, *,
             expected: Mapping[str, Any]) -> None:
        for attempt in (1, 2):
            try:
                with writing(self.engine) as conn:
                    self._park(conn, report, parked, now, None, None, None, expected)
                return
            except IntegrityError:
                # No record's row to lock: the same report, resent at once, may have been
                # parked between this one's look and its insert. Counted on the second go.
                if attempt == 2:
                    raise

    def parked_reports(self, *, reference: str | None = None,
                       limit: int = 100) -> list[ParkedReport]:
        return parking.parked_reports(self.engine, self.parked_reports_table,
                                      reference=reference, limit=limit)

    def _park(self, conn: Connection, report: Report, parked: Parked, now: datetime,
              record: Stated | None, state_before: str | None, state_after: str | None,
              expected: Mapping[str, Any]) -> None:
        parking.park(
            conn, self.parked_reports_table, now, source=report.source, digest=report.digest,
            expected=expected, reported=report.facts, reference=report.reference[:50] or None,
            transaction_id=report.transaction_id[:64] or None, reason_code=parked.code,
            reason=parked.reason, field=parked.field, state_after=state_after,
            state_before=state_before, dossier_code=record.dossier_code if record else None,
            agency=record.agency if record else None, peer=(report.peer or "")[:200] or None)
        self._note(conn, report, now, parked=parked)

    def _note(self, conn: Connection, report: Report, now: datetime, *,
              event_id: str | None = None, parked: Parked | None = None,
              reason: str | None = None) -> None:
        if report.source == CALLBACK:  # a reply to the hub's own question is no call: not noted
            note_call(conn, self.calls, now, reference=report.reference,
                      transaction_id=report.transaction_id, digest=report.digest,
                      peer=report.peer, event_id=event_id, parked=parked, reason=reason)
