"""Exchange and queue names, all derived from ``Settings.name_prefix`` so several hubs (or test
runs) share one broker without seeing each other's messages."""

from __future__ import annotations

from dataclasses import dataclass


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
        return f"{self.prefix}.work.{destination}"

    def retry(self, tier: int) -> str:
        return f"{self.prefix}.retry.{tier}"
