"""Exchange and queue names, all derived from ``Settings.name_prefix`` so several hubs (or test
runs) share one broker without seeing each other's messages."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

# A dossier's slot: which of SLOTS buckets its code hashes to (CRC-32, the same in every
# process and language). A partitioned destination binds each of its partition queues on the
# slots i, i + n, i + 2n... of its n partitions; 64 slots spread up to 64 partitions evenly
# enough (16 each for 4, 8 for 8).
SLOTS = 64


def slot_of(key: str) -> int:
    return zlib.crc32(key.encode("utf-8")) % SLOTS


@dataclass(frozen=True, slots=True)
class Names:
    prefix: str

    @property
    def events(self) -> str:
        """Topic exchange every event is published to."""
        return f"{self.prefix}.events"

    @property
    def unroutable(self) -> str:
        """Fanout exchange (alternate exchange of ``events``) and the queue behind it."""
        return f"{self.prefix}.unroutable"

    @property
    def return_exchange(self) -> str:
        """Headers exchange that expired retries dead-letter into, back to their work queue."""
        return f"{self.prefix}.return"

    @property
    def dead(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def invalid(self) -> str:
        return f"{self.prefix}.invalid"

    def work(self, destination: str) -> str:
        """The work queue of an unpartitioned destination (one partition)."""
        return f"{self.prefix}.work.{destination}"

    def partition(self, destination: str, index: int) -> str:
        """Partition ``index`` of a destination's work, when it has more than one."""
        return f"{self.prefix}.work.{destination}.p{index}"

    def partitions(self, destination: str, count: int) -> list[str]:
        """The work queues of a destination with ``count`` partitions (one: its plain work
        queue, the name it always had)."""
        if count <= 1:
            return [self.work(destination)]
        return [self.partition(destination, i) for i in range(count)]

    def route(self, destination: str) -> str:
        """Headers exchange of a partitioned destination: bound on the events exchange with the
        destination's patterns, it routes each message to a partition by its ``lt-slot``."""
        return f"{self.prefix}.route.{destination}"

    def unslotted(self, destination: str) -> str:
        """Fanout exchange behind ``route`` (its alternate exchange): a message without
        ``lt-slot`` goes to partition 0 rather than nowhere."""
        return f"{self.prefix}.route.{destination}.unslotted"

    def retry(self, tier: int) -> str:
        return f"{self.prefix}.retry.{tier}"
