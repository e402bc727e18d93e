"""A system's feed of a record's state over time (tracking entries, pushed as they happen or read
by polling): only a change of state becomes an event. An entry older than the newest the
system reported is old news, the same state again is no change, and an entry recorded before
is not a change either; pushed again (the system resends what it was not thanked for), it is
answered with the event recorded for it. ``changes`` decides, pure; ``FeedStore`` applies it
in one write per record, the record's row locked, so a push and a poll of the same record
never both emit a change."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import sqlalchemy as sa

from hub.adaptertables import utc, writing
from hub.envelope import Envelope
from hub.stateful import event_json
from hub.statestore import RecordStore


class Entry(Protocol):
    """One entry of the feed: the state the system reports, and since when."""

    @property
    def state(self) -> Hashable: ...

    @property
    def at(self) -> datetime: ...


class Followed(Protocol):
    """A record whose state the feed tells: the last state and the newest time reported."""

    @property
    def last_state(self) -> Hashable | None: ...

    @property
    def last_system_at(self) -> datetime | None: ...


E = TypeVar("E", bound=Entry)
F = TypeVar("F", bound=Followed)


@dataclass
class Changes(Generic[E]):
    """What entries of one record change: the events to return (new, or recorded before and
    pushed again), the entries to record with their events, and the record's state after."""

    state: Hashable | None
    newest: datetime | None
    events: list[str] = field(default_factory=list)
    new: list[tuple[E, Envelope]] = field(default_factory=list)


def changes(record: F, recorded: Mapping[tuple[Hashable, datetime], str], items: Iterable[E],
            build: Callable[[F, E], Envelope], pushed: bool) -> Changes[E]:
    """The changes among ``items`` (entries of ``record``; ``recorded``: the events recorded
    for it, by state and time; ``build``: the event of a change). ``pushed``: the entries were
    pushed, and one recorded before gets its stored event back (the system sent it again
    because the hub's answer was lost). Pure."""
    out: Changes[E] = Changes(record.last_state, record.last_system_at)
    for item in sorted(items, key=lambda i: i.at):
        known = recorded.get((item.state, item.at))
        if known is not None:
            if pushed:
                out.events.append(known)
            continue
        if out.newest is not None and item.at < out.newest:
            continue  # older than what the system already told us
        out.newest = item.at if out.newest is None else max(out.newest, item.at)
        if item.state == out.state:
            continue  # the same state reported again: not a change
        env = build(record, item)
        out.new.append((item, env))
        out.events.append(event_json(env))
        out.state = item.state
    return out


R = TypeVar("R", bound=Followed)


class FeedStore(RecordStore[R]):
    """The records of a feed on SQL: ``records`` with ``last_state``, ``last_system_at`` and
    ``closed``, keyed by their primary key; ``events`` keyed by that column, ``state`` and
    ``at`` (the entry's time). ``pushed``: the source of the entries the system pushes."""

    pushed: str

    def track(self, key: str, items: Iterable[Any], build: Callable[[R, Any], Envelope], *,
              source: str, now: datetime, emitted: bool, terminal: frozenset[Any]) -> list[str]:
        """Record the changes among ``items`` of the record ``key`` (``changes``) and return
        their events; a record in a ``terminal`` state is closed. None for no such record."""
        column = self.named
        with writing(self.engine) as conn:
            found = self.by(column, key, conn)
            if found is None:
                return []
            known = conn.execute(sa.select(self.events.c.state, self.events.c.at,
                                           self.events.c.event)
                                 .where(self.events.c[column] == key)).all()
            news = changes(found, {(s, at.replace(tzinfo=UTC)): e for s, at, e in known}, items,
                           build, source == self.pushed)
            for item, env in news.new:
                self.keep_event(conn, env, source, now, emitted=emitted, state=item.state,
                                at=utc(item.at), **{column: key})
            self.update(self.records, self.records.c[column] == key, now, conn,
                        last_state=news.state, closed=news.state in terminal,
                        last_system_at=utc(news.newest) if news.newest else None)
        return news.events
