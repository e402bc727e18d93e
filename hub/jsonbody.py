"""JSON bodies that come from outside: the one parser of every entry point that reads JSON (the
REST routes, the callbacks of external systems).

``json.loads`` alone lets through bodies that fail later, far from the request that caused
them, as a 500:

- deep nesting (``[[[[...``, 4 KB are enough) exhausts the recursion of the parser itself, or
  of whatever walks the value afterwards (validation, the digest's ``json.dumps``);
- a lone UTF-16 surrogate (the escape ``"\\udfff"``) is valid JSON syntax but no character:
  the text can never be encoded as UTF-8 to be stored, signed or forwarded. (Raw surrogate bytes
  are not UTF-8 either, yet ``json.loads`` of bytes decodes with ``surrogatepass`` and keeps
  them: the body is decoded strictly here.)
- ``NaN``, ``Infinity`` and numbers beyond a float (``1e400``) are not JSON numbers anything
  downstream can carry (RFC 8259 section 6; the hub's own JSON would say ``Infinity``).
- an object naming the same member twice (``{"amount": 1, "amount": 1000}``) is read by
  ``json.loads`` as its last value, by other parsers as the first, or refused (RFC 8259 section
  4 leaves it open): the hub and whoever checks the same signed bytes after it (an auditor,
  the system the body is forwarded to) would read two different requests. Refused, naming the
  member (``client.duplicate_key``); envelopes read from the broker likewise
  (``loads_unique``).

Numbers written with an exponent (``1e30``) come back as ``ExponentNumber``, a float that says
so: JSON Schema sees the value only, but an amount must be written in plain digits, and the
canonical model (``hub.model``) refuses an exponent there.

The checks cost next to nothing on an ordinary body, which the throughput of the intake
depends on (docs/performance.md#json-body-checks): the members are counted as each object is
built, by a hook json's C scanner calls; the depth is measured only when the body holds more
brackets than the limit (a body with n brackets cannot nest deeper than n), and strings are
searched for surrogates only when the body holds an escape in the surrogate range
(``\\uD800`` to ``\\uDFFF``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

from hub.contracts import field_path
from hub.errors import ClientError, InvalidMessage, ValidationError

# Containers nested in one another, the outermost counting 1. The deepest body of any contract
# nests about five (a provincial batch: object, list, update, list, item); 32 leaves room for
# systems' own extensions and keeps everything that walks a value (pydantic, jsonschema,
# json.dumps) far from Python's recursion limit. Settings.max_json_depth overrides it.
MAX_DEPTH = 32


class BadJson(ClientError, InvalidMessage):
    """A body that is not usable JSON. The sender's fault (a ``ClientError``, HTTP 400: sending
    it again fails the same way) and a message that can never be processed (an
    ``InvalidMessage``, parked at once were it ever queued)."""

    code = "client.unparseable"
    http_status = 400


def parse_json(body: bytes, *, max_depth: int = MAX_DEPTH, what: str = "the body") -> Any:
    """The JSON value of ``body`` (UTF-8, or UTF-16/32 as RFC 8259's predecessors allowed), or
    ``BadJson``: ``client.unparseable``, ``client.too_deep`` (nested more than ``max_depth``
    containers) or ``client.lone_surrogate``. ``what`` names the body in messages."""
    encoding = json.detect_encoding(body)
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:
        _refuse(f"{what} is not valid {encoding.removesuffix('-sig').upper()} ({exc.reason} "
                f"at byte {exc.start}); send JSON encoded in UTF-8")
    try:
        value = _DECODER.decode(text)
    except _Duplicate:
        _refuse_duplicate(text, what, max_depth)
    except json.JSONDecodeError as exc:
        _refuse(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} column "
                f"{exc.colno}); send a JSON object")
    except _NotANumber as exc:
        _refuse(f"{what} holds the number {exc.args[0]!r:.40}, which is not a finite JSON "
                "number; send amounts and counts as ordinary numbers")
    except ValueError:
        # The only other ValueError of the decoder: an integer longer than Python converts
        # (sys.get_int_max_str_digits, 4300 digits), a denial-of-service guard of its own.
        _refuse(f"{what} holds an integer with thousands of digits; no field takes such a "
                "number: send it as it is meant (an amount, a count) or as a string")
    except RecursionError:
        # Last resort: the depth is measured below, after parsing, and a body nested deep
        # enough stops the parser's own recursion first.
        _too_deep(what, max_depth)
    # The filters run in C over the bytes: deleting all but the brackets (cheaper than
    # counting each kind); a backslash (memchr: a UTF-8 body from a sender
    # that does not escape has none), then an escape in the surrogate range.
    if (len(body) - len(body.translate(None, b"[{")) > max_depth
            and _deeper_than(value, max_depth)):
        _too_deep(what, max_depth)
    if encoding.startswith("utf-8"):
        maybe = b"\\" in body and _SURROGATE_ESCAPE.search(body) is not None
    else:
        maybe = _SURROGATE_ESCAPE_TEXT.search(text) is not None
    if maybe:
        _check_text(value, what)
    return value


def parse_object(body: bytes, *, max_depth: int = MAX_DEPTH,
                 what: str = "the body") -> dict[str, Any]:
    """``parse_json`` of a body that must be a JSON object; any other JSON value is refused as
    not matching the contract (``client.schema_invalid``, field ``body``)."""
    value = parse_json(body, max_depth=max_depth, what=what)
    if not isinstance(value, dict):
        raise ValidationError(f"{what} is a JSON {_json_type(value)}; send a JSON object",
                              field="body")
    return value


class DuplicateMember(ValueError):
    """An object of the JSON text names a member twice. ``field``: the member, where it is
    (``fees[0].amount``); the message says what to do."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def loads_unique(body: bytes | str) -> Any:
    """``json.loads`` of JSON the hub did not write itself and cannot refuse at a door (an
    envelope on the broker), refusing only a member named twice (``DuplicateMember``);
    ``ValueError``/``RecursionError`` as ``json.loads`` raises them otherwise."""
    text = (body if isinstance(body, str)
            else body.decode(json.detect_encoding(body), "surrogatepass"))
    try:
        return _UNIQUE.decode(text)
    except _Duplicate:
        path, key = _find_duplicate(text)
        raise DuplicateMember(_duplicate_message(path, key, "the message"),
                              field_path((*path, _printable(key)))) from None


class ExponentNumber(float):
    """A JSON number written with an exponent (``1e30``, ``2.5E3``). A float in every
    respect: the canonical model refuses it where a number must be written in plain digits
    (amounts: ``1e30`` VND is no amount, and ``1e-7`` would reach a payment gateway as
    ``1E-7``)."""

    __slots__ = ()


class _NotANumber(ValueError):
    pass


class _Duplicate(ValueError):
    """Raised by the members hook, inside json's scanner: the parse stops at once, and the
    slow path (``_find_duplicate``) names the member."""


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        raise _Duplicate
    return members


class _Members(list[tuple[str, Any]]):
    """An object's members in order, duplicates kept (the slow path only)."""


def _find_duplicate(text: str) -> tuple[tuple[Any, ...], str]:
    """Where the first object (in document order) naming a member twice is, and the member.
    Only for a text known to hold one: parsed again, keeping every member of every object."""
    root = _LOCATOR.decode(text)
    stack: list[tuple[Any, tuple[Any, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _Members):
            seen: set[str] = set()
            for key, _ in node:
                if key in seen:
                    return path, key
                seen.add(key)
            children = [(item, (*path, key)) for key, item in node]
        elif isinstance(node, list):
            children = [(item, (*path, i)) for i, item in enumerate(node)]
        else:
            continue
        stack.extend(reversed(children))  # depth first, in document order
    raise AssertionError("no member named twice")  # pragma: no cover - called when one is


def _printable(key: str) -> str:
    # A member name may hold a lone surrogate (checked after parsing): the error names it
    # with its escape, as the error must itself be UTF-8.
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def _duplicate_message(path: tuple[Any, ...], key: str, what: str) -> str:
    where = f"an object at {field_path(path)}" if path else what
    return (f'{where} has the member "{_printable(key):.80}" twice; send each member once '
            "(JSON parsers differ on which of the two counts, so two readers of the same "
            "bytes would read two different requests)")


def _refuse_duplicate(text: str, what: str, max_depth: int) -> NoReturn:
    try:
        path, key = _find_duplicate(text)
    except RecursionError:
        # The first parse stopped at the duplicate before reaching a member nested this deep.
        _too_deep(what, max_depth)
    _refuse(_duplicate_message(path, key, what), code="client.duplicate_key",
            field=field_path((*path, _printable(key))))


def _no_constant(name: str) -> NoReturn:
    raise _NotANumber(name)


def _finite_float(literal: str) -> float:
    number = float(literal)
    if math.isinf(number):
        raise _NotANumber(literal)
    if "e" in literal or "E" in literal:
        return ExponentNumber(number)
    return number


# \uD800 to \uDFFF, either case. Also found in an escaped backslash followed by "ud8..."
# (``"\\\\ud800"``, the text \ud800): a filter, the strings themselves are checked after it.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_TEXT = re.compile(r"\\u[dD][89a-fA-F]")

# One decoder for every call: json.loads with arguments would build one per call. parse_float
# is called only for numbers with a fraction or an exponent, which bodies hold few of; the
# members hook once per object (json's C scanner builds the pairs either way).
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float,
                            object_pairs_hook=_unique_members)
_UNIQUE = json.JSONDecoder(object_pairs_hook=_unique_members)
# The slow path's: structure only (numbers are not converted, so none can fail it).
_LOCATOR = json.JSONDecoder(object_pairs_hook=_Members, parse_int=len, parse_float=len,
                            parse_constant=len)


def _refuse(message: str, *, code: str | None = None, field: str = "body") -> NoReturn:
    raise BadJson(message, code=code, field=field) from None


def _too_deep(what: str, max_depth: int) -> NoReturn:
    _refuse(f"{what} nests arrays and objects more than {max_depth} levels deep; no contract "
            "of the hub needs that many: send the body as its contract describes it",
            code="client.too_deep")


_CONTAINERS = (dict, list)  # what json builds: exact types, compared with ``type(x) in``


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests more than ``limit`` containers. Level by level, not recursive
    (no depth can exhaust the stack), and stopping at the limit."""
    if type(value) not in _CONTAINERS:
        return False
    level = [value]
    for _ in range(limit):
        level = [child for node in level
                 for child in (node.values() if type(node) is dict else node)
                 if type(child) in _CONTAINERS]
        if not level:
            return False
    return True


def _check_text(value: Any, what: str) -> None:
    """Refuse a body whose strings (member names or values) hold a lone surrogate. All the
    strings are encoded at once; only when that fails is the value walked again to name the
    string. Called on values already known to nest at most the depth limit."""
    strings: list[str] = []
    level = [value]
    while level:
        strings += [node for node in level if type(node) is str]
        strings += [k for node in level if type(node) is dict for k in node]
        level = [child for node in level if type(node) in _CONTAINERS
                 for child in (node.values() if type(node) is dict else node)]
    try:
        "".join(strings).encode("utf-8")
    except UnicodeEncodeError:
        _name_surrogate(value, what)


def _name_surrogate(value: Any, what: str) -> None:
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            _check_string(node, path, what)
        elif isinstance(node, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(node))
        elif isinstance(node, dict):
            for key, item in node.items():
                _check_string(key, path, what, key=True)
                stack.append((item, (*path, key)))


def _check_string(text: str, path: tuple[Any, ...], what: str, *, key: bool = False) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # The surrogate is named by its escape: the character itself cannot even be printed.
        escape = f"\\u{ord(text[exc.start]):04x}"
        where = "a member name" if key else "the text"
        if not path:
            where += f" of {what}"
        _refuse(f"{where} holds the escape {escape}, a lone UTF-16 surrogate: it stands for "
                "no character and cannot be stored or forwarded as UTF-8; send the text as "
                "UTF-8, writing a character beyond U+FFFF as a surrogate pair if escaped",
                code="client.lone_surrogate", field=field_path(path) or "body")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else "array"
