"""Numbers an operator loads into a pool (``hub.numberpool``): given one by one, a range from its
first to its last number, or a file of numbers, each checked by the system's own rule
(``check(number, where)``, raising ``ConfigError`` naming ``where``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated

from pydantic import Field

from hub.adapterconfig import NonBlank, Section
from hub.errors import ConfigError
from hub.numberpool import NumberPool, PoolCounts

MAX_RANGE = 1_000_000

Check = Callable[[str, str], str]


@dataclass(frozen=True)
class Series:
    """A kind of number: ``pattern`` with the groups ``prefix``, ``serial`` and ``suffix``; a
    range steps the serial, keeping its width. With ``check_digit``, each number carries the
    digit it computes from the serial between serial and suffix. ``mismatch`` says what two
    ends of a range of this kind must share."""

    pattern: re.Pattern[str]
    mismatch: str
    check_digit: Callable[[str], str] | None = None

    def numbers(self, prefix: str, start: int, end: int, width: int, suffix: str) -> list[str]:
        serials = (f"{n:0{width}d}" for n in range(start, end + 1))
        return [f"{prefix}{s}{self.check_digit(s) if self.check_digit else ''}{suffix}"
                for s in serials]


# Letters (or anything) then digits: VNP0098.
PLAIN = Series(re.compile(r"^(?P<prefix>.*?)(?P<serial>\d+)(?P<suffix>)$"),
               "must share their letters and end in digits of the same width")


def expand(first: str, last: str, check: Check, kinds: Sequence[Series] = (PLAIN,)) -> list[str]:
    """Every number from ``first`` to ``last`` inclusive, of the first of ``kinds`` both match
    (the last kind's ``mismatch`` is the error when none does)."""
    a, b = check(first, "first"), check(last, "last")
    for kind in kinds:
        ma, mb = kind.pattern.match(a), kind.pattern.match(b)
        if ma and mb:
            break
    if not ma or not mb or (ma["prefix"], ma["suffix"]) != (mb["prefix"], mb["suffix"]) or len(
            ma["serial"]) != len(mb["serial"]):
        raise ConfigError(f"{a} and {b} {kind.mismatch}", field="last")
    start, end = int(ma["serial"]), int(mb["serial"])
    if end < start:
        raise ConfigError(f"the range {a}..{b} runs backwards", field="last")
    if end - start + 1 > MAX_RANGE:
        raise ConfigError(
            f"the range {a}..{b} holds {end - start + 1} numbers; load at most {MAX_RANGE} at once",
            field="last",
        )
    return kind.numbers(ma["prefix"], start, end, len(ma["serial"]), ma["suffix"])


def read_file(path: Path, check: Check) -> list[str]:
    """One number per line; blank lines and ``#`` comments are skipped."""
    numbers = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if text:
            numbers.append(check(text, f"{path.name}:{lineno}"))
    return numbers


@dataclass(frozen=True)
class Numbers:
    """A system's numbers: ``check`` (``what`` names a number given alone in its errors) and the
    kinds a range may be of, first match first."""

    check: Check
    kinds: Sequence[Series] = (PLAIN,)
    what: str = "number"

    def range(self, first: str, last: str) -> list[str]:
        return expand(first, last, self.check, self.kinds)

    def file(self, path: Path) -> list[str]:
        return read_file(path, self.check)

    def given(self, numbers: Sequence[str] = (), file: Path | None = None,
              first: str | None = None, last: str | None = None) -> list[str]:
        """Numbers given one by one, in a file and as a range (``first`` alone: that number)."""
        wanted = [self.check(n, self.what) for n in numbers]
        if file is not None:
            wanted += self.file(file)
        if last is not None and first is None:
            raise ConfigError(f"--last {last!r:.40} ends a range that has no start; give its "
                              "first number with --first", field="first")
        if first is not None:
            wanted += self.range(first, last or first)
        return wanted

    def keep(self, pool: NumberPool, owner: str, ranges: Ranges, now: datetime) -> None:
        """Put configured ``ranges`` in ``owner``'s pool, as a worker starts: they are always
        there (numbers already in the pool, free, taken or burned, are left alone)."""
        for span in ranges.ranges:
            pool.add(owner, self.range(span.first, span.last), now)


class Range(Section):
    first: NonBlank
    last: NonBlank


class Ranges(Section):
    """Ranges of numbers a system pre-allocated, loaded into the pool when a worker starts
    (numbers already there are left alone): an adapter's configuration section."""

    ranges: Annotated[tuple[Range, ...], Field(strict=False)] = ()


@dataclass(frozen=True)
class Loaded:
    owner: str
    offered: int
    added: int  # the others were already in the pool
    counts: PoolCounts


def load(pool: NumberPool, owner: str, numbers: Sequence[str], now: datetime) -> Loaded:
    """``numbers`` added to ``owner``'s pool, and the pool's counts after."""
    return Loaded(owner, len(numbers), pool.add(owner, numbers, now), pool.counts(owner))
