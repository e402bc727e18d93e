"""Which delivery tags may be acknowledged, when messages finish out of order.

A ``basic.ack`` with ``multiple=True`` acknowledges every outstanding tag up to the one given,
so it may only name a tag when every earlier tag is finished too. The tracker keeps the
finished tags beyond the first unfinished one; when too many wait behind a slow message it
releases them with single acks so the prefetch window does not stall.
"""

from __future__ import annotations


class AckTracker:
    """Tags of one channel (they start at 1 and increase by one per delivery)."""

    def __init__(self, spill: int) -> None:
        self.spill = max(1, spill)
        self._next = 1  # lowest tag not yet acknowledged
        self._done: set[int] = set()  # finished, not yet acknowledged
        self._acked_alone: set[int] = set()  # acknowledged singly, beyond a gap

    def done(self, tag: int) -> None:
        if tag >= self._next and tag not in self._acked_alone:
            self._done.add(tag)

    @property
    def waiting(self) -> int:
        """Finished tags not acknowledged yet."""
        return len(self._done)

    def collect(self) -> tuple[int, list[int]]:
        """``(upto, singles)``: ack ``upto`` with ``multiple=True`` (0: nothing), then each of
        ``singles`` alone."""
        done, alone = self._done, self._acked_alone
        tag = self._next
        upto = 0
        while True:
            if tag in done:
                done.remove(tag)
                upto = tag  # multiple=True must name a tag still outstanding at the broker
            elif tag in alone:
                alone.remove(tag)
            else:
                break
            tag += 1
        self._next = tag
        singles: list[int] = []
        if len(done) >= self.spill:
            singles = sorted(done)
            done.clear()
            alone.update(singles)
        return upto, singles
