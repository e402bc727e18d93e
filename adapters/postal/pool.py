"""The waybill numbers' own rules (UPU S10 check digits; ranges and files read by
``hub.numberranges``). The numbers the postal service pre-allocated to the hub's customer code
are kept in a ``hub.numberpool`` (an order takes its number once, by its order key).

An empty pool raises ``RetryableError`` (``server.waybill_pool_empty``): the condition is
fixed by an operator loading more numbers, not by changing the message, so the message waits in
the retry tiers (and, if they run out first, in the dead letters, from where it is replayed).
"""

from __future__ import annotations

import re

from hub.errors import ConfigError, RetryableError
from hub.numberranges import PLAIN, Numbers, Series

WAYBILL_RE = re.compile(r"^[A-Z0-9]{6,20}$")
# UPU S10: two letters, eight-digit serial, check digit, two-letter country (EA123456785VN).
S10_RE = re.compile(r"^(?P<prefix>[A-Z]{2})(?P<serial>\d{8})(?P<check>\d)(?P<suffix>[A-Z]{2})$")
_S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)
REFILL_HINT = (
    "load more with `lienthong postal pool add --file <numbers.txt>` or "
    "`lienthong postal pool add --first <first> --last <last>`"
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


# S10 numbers step their serial and get their check digit computed; others step their trailing
# digits.
WAYBILLS = Numbers(check_waybill, (Series(S10_RE, "are not of one series", s10_check_digit),
                                    PLAIN), "waybill")
expand_range, read_file = WAYBILLS.range, WAYBILLS.file


def empty(customer_code: str) -> PoolEmpty:
    return PoolEmpty(
        f"the waybill pool of customer code {customer_code!r} is empty; {REFILL_HINT}. The "
        "message is retried on its own once numbers are there", field="ItemCode")
