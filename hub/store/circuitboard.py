"""``hub.circuits.CircuitBoard`` on the store's database (table ``circuit_reports``): one row
per destination and process, replaced by each report."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import Engine, delete, select

from hub.circuits import Report
from hub.store.engine import translate_errors
from hub.store.tables import circuit_reports as table


class StoreCircuitBoard:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def report(self, process: str, circuits: Mapping[str, tuple[str, int, datetime]],
               at: datetime) -> None:
        with translate_errors("writing the circuits' report"), self._engine.begin() as conn:
            # Replaced whole: a destination this process no longer calls leaves the board.
            conn.execute(delete(table).where(table.c.process == process))
            if circuits:
                conn.execute(table.insert(), [
                    {"destination": name, "process": process, "state": state,
                     "failures": failures, "changed_at": changed, "reported_at": at}
                    for name, (state, failures, changed) in sorted(circuits.items())])

    def forget(self, process: str) -> None:
        with translate_errors("clearing the circuits' report"), self._engine.begin() as conn:
            conn.execute(delete(table).where(table.c.process == process))

    def reports(self) -> list[Report]:
        with translate_errors("reading the circuits' reports"), self._engine.connect() as conn:
            rows = conn.execute(select(table).order_by(table.c.destination, table.c.process))
            return [Report(r.destination, r.process, r.state, r.failures, r.changed_at,
                           r.reported_at) for r in rows]
