"""The waybill numbers' own rules (UPU S10 check digits, ranges, files). The numbers the postal
service pre-allocated to the hub's customer code are kept in a ``hub.numberpool`` (an order
takes its number once, by its order key).

An empty pool raises ``RetryableError`` (``server.waybill_pool_empty``): the condition is
fixed by an operator loading more numbers, not by changing the message, so the message waits in
the retry tiers (and, if they run out first, in the dead letters, from where it is replayed).
"""

from __future__ import annotations

import re
from pathlib import Path

from hub.errors import ConfigError, RetryableError

WAYBILL_RE = re.compile(r"^[A-Z0-9]{6,20}$")
# UPU S10: two letters, eight-digit serial, check digit, two-letter country (EA123456785VN).
S10_RE = re.compile(r"^(?P<prefix>[A-Z]{2})(?P<serial>\d{8})(?P<check>\d)(?P<country>[A-Z]{2})$")
_S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)
MAX_RANGE = 1_000_000
REFILL_HINT = (
    "load more with `lienthong postal pool add --file <numbers.txt>` or "
    "`lienthong postal pool add --range <first> <last>`"
)


class PoolEmpty(RetryableError):
    code = "server.waybill_pool_empty"


def s10_check_digit(serial: str) -> str:
    total = sum(int(d) * w for d, w in zip(serial, _S10_WEIGHTS, strict=True))
    check = 11 - total % 11
    return "0" if check == 10 else "5" if check == 11 else str(check)


def check_waybill(number: str, where: str = "waybill") -> str:
    text = number.strip().upper()
    if not WAYBILL_RE.match(text):
        raise ConfigError(
            f"{number!r:.40} is not a waybill number; expected 6-20 letters and digits like "
            "'EA123456785VN'",
            field=where,
        )
    m = S10_RE.match(text)
    if m and s10_check_digit(m["serial"]) != m["check"]:
        raise ConfigError(
            f"{text} has check digit {m['check']}, but its serial {m['serial']} gives "
            f"{s10_check_digit(m['serial'])}; a mistyped number?",
            field=where,
        )
    return text


def expand_range(first: str, last: str) -> list[str]:
    """Every number from ``first`` to ``last`` inclusive. S10 numbers step their serial and get
    their check digit computed; other numbers step their trailing digits, keeping the width."""
    a, b = check_waybill(first, "first"), check_waybill(last, "last")
    ma, mb = S10_RE.match(a), S10_RE.match(b)
    if ma and mb:
        if (ma["prefix"], ma["country"]) != (mb["prefix"], mb["country"]):
            raise ConfigError(f"{a} and {b} are not of one series", field="last")
        start, end = int(ma["serial"]), int(mb["serial"])
        _check_span(start, end, a, b)
        return [
            f"{ma['prefix']}{n:08d}{s10_check_digit(f'{n:08d}')}{ma['country']}"
            for n in range(start, end + 1)
        ]
    ra, rb = re.match(r"^(.*?)(\d+)$", a), re.match(r"^(.*?)(\d+)$", b)
    if not ra or not rb or ra[1] != rb[1] or len(ra[2]) != len(rb[2]):
        raise ConfigError(
            f"{a} and {b} must share their letters and end in digits of the same width",
            field="last",
        )
    start, end = int(ra[2]), int(rb[2])
    _check_span(start, end, a, b)
    width = len(ra[2])
    return [f"{ra[1]}{n:0{width}d}" for n in range(start, end + 1)]


def _check_span(start: int, end: int, a: str, b: str) -> None:
    if end < start:
        raise ConfigError(f"the range {a}..{b} runs backwards", field="last")
    if end - start + 1 > MAX_RANGE:
        raise ConfigError(
            f"the range {a}..{b} holds {end - start + 1} numbers; load at most {MAX_RANGE} at once",
            field="last",
        )


def read_file(path: Path) -> list[str]:
    """One number per line; blank lines and ``#`` comments are skipped."""
    numbers = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if text:
            numbers.append(check_waybill(text, f"{path.name}:{lineno}"))
    return numbers


def empty(customer_code: str) -> PoolEmpty:
    return PoolEmpty(
        f"the waybill pool of customer code {customer_code!r} is empty; {REFILL_HINT}. The "
        "message is retried on its own once numbers are there", field="ItemCode")
