"""The scaffold of an adapter whose system answers later, on its own, with a toy system of its
own (no adapter's): a record of the request (hub.stateful.Requested) and the events it causes;
a pass over what is open (open_pass); a record kept once per key, its answer kept first writer
wins (hub.statestore.RecordStore); a system's reports judged by a table of transitions and
applied, answered again or parked (hub.reports); a feed of a record's state, whose changes
alone become events (hub.statefeed), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from state_fakes import MemoryWaybills

from adapters.postal.pool import check_waybill
from hub.adaptertables import ensure_schema
from hub.calllog import call_log_table
from hub.envelope import Envelope
from hub.errors import ConfigError, HubError, RetryableError
from hub.numberpool import PoolCounts
from hub.numberranges import PLAIN, Numbers
from hub.parked import Parked, parked_table
from hub.poolcommands import PoolAt, pool_commands
from hub.reports import (
    CALLBACK,
    Report,
    ReportStore,
    ReportWords,
    Verdict,
    by_table,
    content_digest,
)
from hub.statefeed import FeedStore, changes
from hub.stateful import Requested, Sweep, event_json, open_pass
from hub.statestore import event_columns, request_columns
from hub.store.engine import make_engine
from hub.transitions import Transitions

NOW = datetime(2025, 1, 1, 8, 0, tzinfo=UTC)
HUB = "VN:GOV:000.00.00.G22:lienthong"

metadata = sa.MetaData()
tickets = sa.Table(
    "toy_tickets", metadata,
    sa.Column("reference", sa.String(50), primary_key=True),
    *request_columns(),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("answer", sa.Text),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False))
answers = sa.Table(
    "toy_answers", metadata,
    sa.Column("reference", sa.String(50), primary_key=True),
    sa.Column("transaction_id", sa.String(64), primary_key=True),
    *event_columns(source="said_by", at="said_at"))


@dataclass(frozen=True, kw_only=True)
class Ticket(Requested):
    reference: str
    status: str = "open"
    answer: str | None = None


@dataclass(frozen=True)
class Answer:
    event_id: str
    event: str


def table(tmp_path: Path) -> Transitions:
    path = tmp_path / "transitions.toml"
    path.write_text('[open]\ndone = { to = "done", publish = true }\n'
                    'wrong = { to = "open", park = "client.wrong" }\n'
                    'withdrawn = { to = "closed" }\n'
                    '[done]\ndone = { to = "done", park = "client.already_done" }\n'
                    '[closed]\n', encoding="utf-8")
    return Transitions.load(path, "a ticket")


class Tickets(ReportStore[Ticket, Answer]):
    records = tickets
    record_type = Ticket
    events = answers
    before_type = Answer
    parked_reports_table = parked_table(metadata, "toy_parked")
    calls = call_log_table(metadata, "toy_calls")


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = (f"sqlite:///{tmp_path / 'toy.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    made = make_engine(url)
    ensure_schema(made, metadata)
    try:
        yield made
    finally:
        made.dispose()


@pytest.fixture
def book(engine: Engine, tmp_path: Path) -> Tickets:
    Tickets.transitions = table(tmp_path)
    return Tickets(engine)


def request_event() -> Envelope:
    return Envelope.new(source="VN:GOV:000.00.00.H56:igate", type="vn.gov.toy.asked",
                        subject="D-1", data={}, agency="000.00.00.H56", procedure="1.1")


def ticket(asked: Envelope | None = None) -> Ticket:
    return Ticket(reference=f"T{uuid.uuid4().hex[:12]}",
                  **Requested.of(asked or request_event(), "D-1", NOW, agency="unused"))


def said(mine: Ticket, transaction_id: str = "X1", source: str = CALLBACK) -> Report:
    return Report(reference=mine.reference, transaction_id=transaction_id,
                  facts={"said": transaction_id}, digest=f"{mine.reference}{transaction_id}",
                  source=source, peer="10.0.0.1")


def caused(mine: Ticket, name: str) -> Envelope:
    return mine.caused(id=str(uuid.uuid4()), source=HUB, type="vn.gov.toy.answered",
                       data={"name": name}, time=NOW)


def test_a_record_keeps_its_request_and_its_events_belong_to_it() -> None:
    asked = request_event()
    mine = ticket(asked)
    assert (mine.dossier_code, mine.agency, mine.procedure) == ("D-1", "000.00.00.H56", "1.1")
    assert (mine.request_id, mine.correlation_id, mine.created_at) == (asked.id, asked.id, NOW)
    event = caused(mine, "x")
    assert (event.subject, event.agency, event.procedure) == ("D-1", "000.00.00.H56", "1.1")
    assert event.causationid == mine.request_id and event.correlationid == mine.correlation_id
    later = mine.caused(id=str(uuid.uuid4()), source=HUB, type="vn.gov.toy.answered",
                        data={}, time=NOW, causation="another")
    assert later.causationid == "another"
    # Without the envelope's agency, the body's is taken.
    bare = Envelope.new(source=HUB, type="vn.gov.toy.asked", subject="D-2", data={})
    assert Requested.of(bare, "D-2", NOW, agency="A", procedure="P")["agency"] == "A"


def test_the_table_publishes_or_parks(tmp_path: Path) -> None:
    moves = table(tmp_path)
    mine = ticket()
    done = by_table(moves, "open", "done", caused(mine, "ok"), lambda c: Parked(c, "-", None), {})
    assert done.state == "done" and done.record is not None and done.parked is None
    wrong = by_table(moves, "done", "done", None, lambda c: Parked(c, "why", "F"), {"k": 1})
    assert wrong == Verdict("done", parked=Parked("client.already_done", "why", "F"),
                            expected={"k": 1})
    with pytest.raises(ValueError, match="no event was built"):
        by_table(moves, "open", "done", None, lambda c: Parked(c, "-", None), {})


def test_declared_facts_name_the_first_that_differs_and_parked_reasons_are_worded(
        tmp_path: Path) -> None:
    path = tmp_path / "reports.toml"
    path.write_text("""
[[facts]]
fact = "ticket"
field = "No"
message = "the system reports ticket {said!r} for {ticket!r}"
[[facts]]
fact = "seats"
field = "Seats"
message = "{said} seats reported, {seats} booked for {ticket}"
[parked]
"client.closed" = "ticket {ticket} is closed; the system now says {said}"
""")
    words = ReportWords.load(path)
    booked = {"ticket": "T1", "seats": 2}
    assert words.disagreement(Said("T1", 2), booked) is None
    # A fact the report does not state is not held against it.
    assert words.disagreement(Said("T1", None), booked) is None
    found = words.disagreement(Said("T1", 3), booked)
    assert found is not None and (found.field, found.message) == (
        "Seats", "3 seats reported, 2 booked for T1")
    # In the declared order: the ticket is checked first.
    found = words.disagreement(Said("T9", 3), booked)
    assert found is not None and (found.field, found.message) == (
        "No", "the system reports ticket 'T9' for 'T1'")
    assert words.reason("client.closed", "State", ticket="T1", said="open") == Parked(
        "client.closed", "ticket T1 is closed; the system now says open", "State")
    path.write_text("[[facts]]\nfact = \"ticket\"\nfield = \"No\"\n[parked]\n")
    with pytest.raises(ConfigError, match="message"):
        ReportWords.load(path)


# A toy system's reports.toml: the fields of its facts, their checks and its parked reasons.
TOY_REPORTS = """
transaction = "Id"
[[facts]]
fact = "reference"
field = "No"
message = "the system reports {said!r} for {reference!r}"
[[facts]]
fact = "seats"
field = "Seats"
message = "{said} seats reported, {seats} booked"
number = true
[parked]
"client.already_done" = "ticket {reference} is done; the system now says {said}"
"""


def toy_words(tmp_path: Path) -> ReportWords:
    path = tmp_path / "reports.toml"
    path.write_text(TOY_REPORTS)
    return ReportWords.load(path)


def test_a_message_s_facts_are_read_by_their_declared_fields(tmp_path: Path) -> None:
    words = toy_words(tmp_path)
    # A number may come as a string of digits; a fact the message lacks is None, not "".
    assert words.said({"No": 7, "Seats": "02", "Id": "X1"}) == {
        "reference": "7", "seats": 2, "transaction_id": "X1"}
    assert words.said({"No": "T1", "Id": None}) == {
        "reference": "T1", "seats": None, "transaction_id": ""}


def test_a_verdict_holds_the_record_s_facts_and_is_worded_by_what_differs(
        tmp_path: Path) -> None:
    words, moves, mine = toy_words(tmp_path), table(tmp_path), ticket()
    # The record's own facts, those it does not keep given, then its status and dossier.
    expected = words.expected(mine, seats=2)
    assert expected == {"reference": mine.reference, "seats": 2, "status": "open",
                        "dossier_code": "D-1"}
    problem = words.disagreement(SimpleNamespace(reference=mine.reference, seats=3), expected)
    wrong = words.verdict(moves, mine, "done", "wrong", None, expected, problem, "State")
    assert wrong == Verdict("open", parked=Parked("client.wrong", "3 seats reported, 2 booked",
                                                  "Seats"), expected=expected)
    done = replace(mine, status="done")
    again = words.verdict(moves, done, "done", "wrong", None, expected, None, "State",
                          reference=mine.reference, said="done")
    assert again.parked == Parked(
        "client.already_done", f"ticket {mine.reference} is done; the system now says done",
        "State")
    applied = words.verdict(moves, mine, "done", "wrong", caused(mine, "ok"), expected, None, "S")
    assert applied.state == "done" and applied.record is not None


def test_a_reply_s_digest_is_its_facts_whatever_their_order() -> None:
    reply = {"No": "T1", "Seats": 2, "Name": "Lê Văn Tám"}
    assert content_digest(reply) == content_digest(dict(reversed(reply.items())))
    assert content_digest(reply) != content_digest({**reply, "Seats": 3})
    assert len(content_digest(reply)) == 64


@dataclass(frozen=True)
class Said:
    ticket: str
    seats: int | None


def test_a_record_is_kept_once_and_answered_once(book: Tickets) -> None:
    first = ticket()
    assert book.add(first) == first
    assert book.add(Ticket(**{**first.__dict__, "request_id": "again"})) == first
    kept = book.keep_first(tickets, tickets.c.reference == first.reference, "answer",
                           caused(first, "a"), NOW)
    again = book.keep_first(tickets, tickets.c.reference == first.reference, "answer",
                            caused(first, "b"), NOW)
    assert again == kept and json.loads(kept)["data"] == {"name": "a"}
    found = book.get(first.reference)
    assert found is not None and found.answer == kept
    assert book.step(first.reference, "withdrawn", NOW) == "closed"
    assert book.step(first.reference, "withdrawn", NOW) is None  # no such move from closed
    assert book.step("NOSUCH", "withdrawn", NOW) is None


def test_a_report_is_applied_once_answered_again_and_parked_when_the_table_says(
        book: Tickets) -> None:
    mine = book.add(ticket())

    def judge(found: Ticket, before: Answer | None) -> Verdict:
        if before is not None:
            return Verdict(found.status, again=before)
        return by_table(book.transitions, found.status, "done", caused(found, "done"),
                        lambda code: Parked(code, "already done", "state"),
                        {"status": found.status})

    applied = book.judged(said(mine), judge, NOW, emitted=False)
    assert applied.state == "done" and applied.event is not None and not applied.repeat
    assert book.unemitted_events(answers.c.reference == mine.reference, 10) == [applied.event]
    repeat = book.judged(said(mine), judge, NOW, emitted=False)
    assert (repeat.event, repeat.repeat) == (applied.event, True)
    parked = book.judged(said(mine, "X2", source="query"), judge, NOW, emitted=False)
    assert parked.parked is not None and parked.event is None
    (kept,) = book.parked_reports(reference=mine.reference)
    assert (kept.reason_code, kept.state_before, kept.state_after) == (
        "client.already_done", "done", "done")
    assert (kept.dossier_code, kept.expected, kept.reported) == (
        "D-1", {"status": "done"}, {"said": "X2"})
    with book.engine.connect() as conn:
        noted = conn.execute(sa.select(book.calls.c.accepted, book.calls.c.event_id)
                             .where(book.calls.c.reference == mine.reference)
                             .order_by(book.calls.c.id)).all()
    # Callbacks are noted whatever became of them; the reply to the hub's question is not.
    event_id = json.loads(applied.event)["id"]
    assert [tuple(n) for n in noted] == [(True, event_id), (True, event_id)]
    with pytest.raises(LookupError):
        book.judged(said(ticket()), judge, NOW, emitted=True)


def test_a_report_of_no_record_is_parked_apart_and_counted(book: Tickets) -> None:
    stray = said(ticket())
    for _ in range(2):
        book.park(stray, Parked("client.unknown", "no such ticket", "ref"), NOW,
                  expected={"who": "me"})
    (kept,) = book.parked_reports(reference=stray.reference)
    assert (kept.times, kept.state_before, kept.expected, kept.peer) == (
        2, None, {"who": "me"}, "10.0.0.1")


def test_a_pass_stops_when_the_system_is_away_and_returns_what_waits() -> None:
    seen: list[int] = []
    closed: list[bool] = []

    class Client:
        async def aclose(self) -> None:
            closed.append(True)

    async def check(n: int) -> None:
        seen.append(n)
        if n == 2:
            raise RetryableError("busy", code="system.busy")
        if n == 3:
            raise RetryableError("away", code="system.unavailable")

    waiting = caused(ticket(), "w")
    report = asyncio.run(open_pass(Sweep.of("x"), [1, 2, 3, 4], check, str,
                                   lambda: [event_json(waiting)], Client()))
    assert seen == [1, 2, 3] and closed == [True]
    assert [e.code for e in report.errors if isinstance(e, HubError)] == [
        "system.busy", "system.unavailable"]
    assert [e.id for e in report.events] == [waiting.id]


# -- a feed of a record's state (hub.statefeed) -------------------------------------------------

parcels = sa.Table(
    "toy_parcels", metadata,
    sa.Column("number", sa.String(20), primary_key=True),
    sa.Column("owner", sa.String(20), nullable=False),
    *request_columns(),
    sa.Column("last_state", sa.Integer),
    sa.Column("last_system_at", sa.DateTime),
    sa.Column("closed", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False))
sightings = sa.Table(
    "toy_sightings", metadata,
    sa.Column("number", sa.String(20), primary_key=True),
    sa.Column("state", sa.Integer, primary_key=True),
    sa.Column("at", sa.DateTime, primary_key=True),
    *event_columns(source_length=8))


@dataclass(frozen=True, kw_only=True)
class Parcel(Requested):
    number: str
    owner: str
    last_state: int | None = None
    last_system_at: datetime | None = None
    closed: bool = False


@dataclass(frozen=True)
class Seen:
    state: int
    at: datetime


class Parcels(FeedStore[Parcel]):
    records = parcels
    record_type = Parcel
    key = "number"
    events = sightings
    pushed = "push"


@pytest.fixture
def feed(engine: Engine) -> Parcels:
    return Parcels(engine)


def seen(state: int, minutes: int) -> Seen:
    return Seen(state, NOW + timedelta(minutes=minutes))


def told(parcel: Parcel, item: Seen) -> Envelope:
    return parcel.caused(id=str(uuid.uuid4()), source=HUB, type="vn.gov.toy.moved",
                         data={"state": item.state}, time=item.at)


def states(events: list[str]) -> list[int]:
    return [json.loads(e)["data"]["state"] for e in events]


def test_only_changes_of_state_become_events_pure() -> None:
    parcel = Parcel(number="P1", owner="O", last_state=1, last_system_at=NOW,
                    **{**Requested.of(request_event(), "D-1", NOW)})
    found = changes(parcel, {(2, NOW + timedelta(minutes=5)): "{kept}"},
                    [seen(1, 9), seen(2, 5), seen(3, -1), seen(1, 3)], told, pushed=True)
    # 2 at +5 is recorded (answered again, pushed); 1 at +3 is the same state; 3 at -1 is old.
    assert found.events[0] == "{kept}" and states(found.events[1:]) == []
    assert (found.state, found.newest) == (1, NOW + timedelta(minutes=9))
    polled = changes(parcel, {}, [seen(2, 5), seen(3, 7)], told, pushed=False)
    assert states(polled.events) == [2, 3] and polled.state == 3 and len(polled.new) == 2


def test_a_feed_records_changes_once_and_closes_on_a_terminal_state(feed: Parcels) -> None:
    owner = f"O{uuid.uuid4().hex[:8]}"  # the PostgreSQL database is shared
    mine, other = (feed.add(Parcel(number=f"P{uuid.uuid4().hex[:12]}", owner=owner,
                                   **Requested.of(request_event(), "D-1", NOW))) for _ in "12")
    assert feed.add(replace(mine, owner="someone else")) == mine  # kept once per key
    assert {p.number for p in feed.chosen(parcels.c.owner == owner, oldest=10)} == {
        mine.number, other.number}
    assert len(feed.chosen(parcels.c.owner == owner, oldest=1)) == 1
    terminal = frozenset({9})
    first = feed.track(mine.number, [seen(2, 5), seen(1, 1)], told, source="poll", now=NOW,
                       emitted=False, terminal=terminal)
    assert states(first) == [1, 2]
    assert feed.track(mine.number, [seen(2, 5)], told, source="poll", now=NOW, emitted=False,
                      terminal=terminal) == []
    assert feed.track(mine.number, [seen(2, 5)], told, source="push", now=NOW, emitted=True,
                      terminal=terminal) == [first[1]]  # pushed again: answered
    assert states(feed.track(mine.number, [seen(9, 8)], told, source="push", now=NOW,
                             emitted=True, terminal=terminal)) == [9]
    found = feed.by("number", mine.number)
    assert found is not None and (found.last_state, found.closed) == (9, True)
    assert found.last_system_at == NOW + timedelta(minutes=8)
    assert feed.track("NOSUCH", [seen(1, 1)], told, source="poll", now=NOW, emitted=False,
                      terminal=terminal) == []
    # Polled events wait for their confirmation; the pushed one went out with its answer.
    waiting = feed.unemitted_of(parcels.c.owner == owner, 10, sightings.c.at)
    assert waiting == first
    assert feed.unemitted_of(parcels.c.owner == owner, 10, named=[other.number]) == []
    assert feed.unemitted_of(parcels.c.owner == owner, 10, named=[]) == []
    assert feed.mark_emitted([json.loads(e)["id"] for e in first], NOW) == 2
    assert feed.unemitted_of(parcels.c.owner == owner, 10) == []


# -- an operator's commands for a pool of numbers (hub.poolcommands) ----------------------------


def test_pool_commands_load_numbers_given_every_way_and_count_them(tmp_path: Path) -> None:
    pool = MemoryWaybills()
    numbers = Numbers(check_waybill, (PLAIN,), "ticket")
    at = PoolAt(pool, "O1", lambda: NOW)
    add, status = pool_commands(numbers, lambda ctx, runtime: runtime, system="the toy system",
                                owner_option="--owner", owner_help="Owner.",
                                first_help="First number.")
    path = tmp_path / "numbers.txt"
    path.write_text("TK000001\n# a comment\nTK000002\n", encoding="utf-8")
    loaded = add(None, numbers=["TK000009"], file=path, first="TK000002", last="TK000004",
                 runtime=at)
    assert (loaded.owner, loaded.offered, loaded.added) == ("O1", 6, 5)  # TK000002 twice
    assert status(None, runtime=at) == PoolCounts(free=5, taken=0, burned=0)
    assert add(None, numbers=["TK000100"], owner="O2", runtime=at).counts.free == 1
    assert "ticket numbers the toy system allocated" in (add.__doc__ or "")
