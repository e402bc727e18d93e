"""Order per dossier, parallel across dossiers: the bookkeeping of an ordered consumer. Pure
logic (no broker, no clock, no store), used by ``hub.broker.consumer``.

``Lanes``: deliveries are put in a lane keyed by their dossier (the envelope's subject). A
lane's deliveries run strictly one after the other, in delivery order; different lanes run
concurrently. A delivery without a key is in no lane and runs at once.

``HeldGroup``: a dossier whose message went to a retry tier is *held*: every later message of
the dossier (waiting in its lane, arriving fresh, or coming back from a tier) is sent behind
it to the same retry tier queue, whose FIFO order keeps the dossier's order. The group travels
together: when the head fails again and moves to the next tier, the members that come back are
sent to the head's new tier. The dossier is released when the head has succeeded (or was
parked) and every member has come back and been handled, in order. The group is small and
serialisable, so a restarted worker (or the one that takes a partition over) goes on holding.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Lanes(Generic[T]):
    """Which deliveries may run now. ``admit`` a delivery when it arrives; when it has finished
    (whatever the outcome), ``done`` gives the next delivery of its lane, to run now."""

    def __init__(self) -> None:
        # key -> deliveries waiting behind the one running; a key is present while its lane
        # has a delivery running.
        self._lanes: dict[str, deque[T]] = {}

    def admit(self, key: str | None, item: T) -> bool:
        """True when ``item`` may run now (no key, or its lane is idle); otherwise it waits
        behind the running delivery of its lane."""
        if key is None:
            return True
        waiting = self._lanes.get(key)
        if waiting is None:
            self._lanes[key] = deque()
            return True
        waiting.append(item)
        return False

    def done(self, key: str | None) -> T | None:
        """The running delivery of ``key`` finished: the next of its lane (running from now on),
        or None when the lane is empty (it is then closed)."""
        if key is None:
            return None
        waiting = self._lanes.get(key)
        if waiting is None:
            raise KeyError(f"lane {key!r} has nothing running")
        if waiting:
            return waiting.popleft()
        del self._lanes[key]
        return None

    def busy(self, key: str) -> bool:
        return key in self._lanes

    @property
    def open(self) -> int:
        """Lanes with a delivery running."""
        return len(self._lanes)

    @property
    def waiting(self) -> int:
        """Deliveries waiting behind another of their lane."""
        return sum(len(w) for w in self._lanes.values())

    def __iter__(self) -> Iterator[T]:
        for waiting in self._lanes.values():
            yield from waiting


@dataclass
class HeldGroup:
    """A held dossier on one queue."""

    queue: str  # the work queue (partition) the dossier's messages come back to
    key: str  # the dossier
    # The message the group waits on (it failed and sits in a retry tier); None once it
    # succeeded or was parked, while members are still on their way back.
    head: str | None
    tier: str  # the retry queue the group travels in: the head's, or the last one it used
    # Messages sent behind, in their order, not yet come back and handled.
    members: list[str] = field(default_factory=list)
    # The head's place in the dossier's sequence (None: not known).
    head_sequence: int | None = None

    @property
    def released(self) -> bool:
        return self.head is None and not self.members

    def arrive(self, message_id: str, sequence: int | None = None) -> tuple[bool, bool]:
        """A message of the dossier is next in its lane: ``(handle, changed)``. ``handle``:
        run it now (it is the head come back, the first member come back once the head is
        done with, or an earlier event of the dossier than the head, by ``sequence``); its
        outcome is then given to ``settle``. Otherwise it is sent behind, to ``tier``;
        ``changed``: it joined the group, which must be saved before the message is sent.
        Deciding to handle changes nothing, so asking again (a delivery run again) gives the
        same answer.

        An earlier event arriving after a later one is held: two of the hub's entry-point
        processes each publish what they kept, so a dossier's events can reach the broker out
        of their order. Sent behind a head that waits for it (a status change the destination
        cannot apply to a dossier it does not have yet), it would wait until the head ran out
        of retry tiers."""
        if message_id == self.head:
            return True, False
        if (sequence is not None and self.head is not None and self.head_sequence is not None
                and sequence < self.head_sequence):
            return True, False
        if self.head is None and self.members and self.members[0] == message_id:
            return True, False
        if message_id in self.members:
            # Back too early (from an older tier while the head is still out, or ahead of an
            # earlier member): behind again, in the same place in the group.
            return False, False
        self.members.append(message_id)
        return False, True

    def involves(self, message_id: str) -> bool:
        """True when ``message_id`` is the one the group waits on now (the head, or the
        first member once the head is done with)."""
        return message_id == self.head or (
            self.head is None and bool(self.members) and self.members[0] == message_id)

    def settle(self, message_id: str, tier: str | None, sequence: int | None = None) -> bool:
        """The outcome of a message handled while its dossier is held (or that just failed):
        ``tier``, the retry queue it went to (the group then waits on it; ``sequence``: its
        place in the dossier's sequence), or None when it succeeded or was parked. True when
        the group changed. An earlier event than the head that fails becomes the head, the
        former head first of the members: it goes on after it."""
        changed = False
        if message_id == self.head:
            self.head = None
            self.head_sequence = None
            changed = True
        elif message_id in self.members and (self.head is not None
                                             or self.members[0] == message_id):
            self.members.remove(message_id)
            changed = True
        if tier is not None:
            if self.head is not None:
                self.members.insert(0, self.head)
            self.head = message_id
            self.head_sequence = sequence
            self.tier = tier
            changed = True
        return changed

    def to_dict(self) -> dict[str, Any]:
        return {"head": self.head, "tier": self.tier, "members": list(self.members),
                "head_sequence": self.head_sequence}

    @classmethod
    def from_dict(cls, queue: str, key: str, doc: Mapping[str, Any]) -> HeldGroup:
        head = doc.get("head")
        members = doc.get("members") or []
        sequence = doc.get("head_sequence")  # absent from groups saved before it was kept
        return cls(queue, key, str(head) if head is not None else None, str(doc["tier"]),
                   [str(m) for m in members],
                   sequence if isinstance(sequence, int) and head is not None else None)
