"""A table of transitions declared as data (``mappings/<name>/transitions.toml``): where each
outcome takes a record in each state, whether the outcome's event is published, and, when the
outcome is not applied, the code it is parked with for an operator. An adapter's state moves
only by its table, so what can happen to a record is read in one place, by an operator too.

The file has one table per state, one key per outcome::

    [pending]
    paid = { to = "paid", publish = true }
    mismatch = { to = "mismatch", park = "client.payment_mismatch" }
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import field
from pathlib import Path

from pydantic import ConfigDict, RootModel
from pydantic.dataclasses import dataclass

from hub import tomlmap
from hub.errors import ConfigError


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Transition:
    """Where an outcome takes a record: its next state, whether the outcome's event is
    published, and the code it is parked with when it is not applied."""

    to: str
    publish: bool = field(default=False, kw_only=True)
    park: str | None = field(default=None, kw_only=True)


class _File(RootModel[dict[str, dict[str, Transition]]]):
    pass


class IllegalTransition(ValueError):
    """An outcome the table has no entry for in the record's state (a caller's bug when the
    table defines the outcome in every state)."""


@dataclasses.dataclass(frozen=True)
class Transitions(Mapping[tuple[str, str], Transition]):
    """The table, by (state, outcome); ``what`` names a record in errors ("a payment")."""

    moves: Mapping[tuple[str, str], Transition]
    what: str

    @classmethod
    def load(cls, path: Path, what: str) -> Transitions:
        parsed = tomlmap.load(_File, path).root
        moves = {(state, outcome): step for state, steps in parsed.items()
                 for outcome, step in steps.items()}
        unknown = sorted({step.to for step in moves.values()} - set(parsed))
        if unknown:
            raise ConfigError(f"leads to {unknown}, which have no table of their own; every "
                              "state the table reaches needs its [state] table", field=path.name)
        return cls(moves, what)

    def __getitem__(self, key: tuple[str, str]) -> Transition:
        return self.moves[key]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.moves)

    def __len__(self) -> int:
        return len(self.moves)

    def states(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(state for state, _ in self.moves))

    def step(self, state: str, outcome: str) -> Transition:
        """The entry for ``outcome`` in ``state``; ``IllegalTransition`` naming what is
        allowed when there is none."""
        try:
            return self.moves[(state, outcome)]
        except KeyError:
            allowed = sorted(o for s, o in self.moves if s == state) or "nothing"
            raise IllegalTransition(
                f"{self.what} in state {state!r} cannot take outcome {outcome!r}; allowed from "
                f"{state!r}: {allowed}") from None

    def stepped(self, state: str, outcome: str) -> str | None:
        """The state ``outcome`` takes a record in ``state`` to, or None when the table has no
        such move (the record moved on meanwhile)."""
        found = self.moves.get((state, outcome))
        return found.to if found is not None else None
