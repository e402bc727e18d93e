"""Replay detection at the entry points: which message ids were seen lately, with the SHA-256
of their body.

``ReplayCache.check`` answers for an authentic message (call it after the signature verified):

- a new id is remembered and passes;
- the same id with the same body is a duplicate (a client resending after a lost answer): it
  returns True, and ``Verifier.verify`` raises ``DuplicateMessage`` so the caller answers as it
  did the first time without processing the message again;
- the same id with another body is a replay: ``InvalidMessage`` ``client.replayed_id``.

Entries live ``ttl`` seconds, which must cover the age window (``max_age + clock_skew``, plus the
retry grace where retried messages are verified): older messages are rejected as stale anyway.
The cache holds at most ``max_entries``; past that the oldest entries go first, so size it for
the window's traffic (ids are 36 bytes, digests 32: about 200 bytes an entry).

If processing a message fails after ``check`` accepted it, call ``forget`` so that the client's
resend is processed rather than answered as a duplicate.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from hub.errors import InvalidMessage

log = logging.getLogger(__name__)


class DuplicateMessage(Exception):
    """The message was already accepted with these exact bytes. Not an error: answer
    idempotently (as the first time) and do not process it again."""

    def __init__(self, message_id: str, signer: str) -> None:
        super().__init__(f"message {message_id} from {signer} was already received")
        self.message_id = message_id
        self.signer = signer


class ReplayCache:
    def __init__(self, ttl: float, max_entries: int = 1_000_000) -> None:
        if ttl <= 0 or max_entries < 1:
            raise ValueError("ttl must be positive and max_entries at least 1")
        self.ttl = ttl
        self.max_entries = max_entries
        # id -> (digest, expires at); insertion order is expiry order.
        self._seen: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._warned_full = False

    def check(self, message_id: str, digest: bytes, now: float) -> bool:
        """True for a duplicate; remembers a new id; raises ``client.replayed_id``."""
        with self._lock:
            self._expire(now)
            seen = self._seen.get(message_id)
            if seen is not None:
                if seen[0] == digest:
                    return True
                raise InvalidMessage(
                    f"message id {message_id} was already used for a different body; every "
                    "message needs a new id (a resend must repeat the exact same bytes)",
                    code="client.replayed_id",
                    field="id",
                )
            if len(self._seen) >= self.max_entries:
                self._seen.popitem(last=False)
                if not self._warned_full:
                    self._warned_full = True
                    log.warning(
                        "replay cache full (%d entries): ids are forgotten before their age "
                        "window ends; raise max_entries",
                        self.max_entries,
                    )
            self._seen[message_id] = (digest, now + self.ttl)
            return False

    def forget(self, message_id: str) -> None:
        with self._lock:
            self._seen.pop(message_id, None)

    def _expire(self, now: float) -> None:
        seen = self._seen
        while seen:
            oldest = next(iter(seen.values()))
            if oldest[1] > now:
                break
            seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)
