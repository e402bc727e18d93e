"""The canonical envelope: one shape for every message on the broker.

Attribute names follow CloudEvents 1.0 (structured JSON mode) so any CloudEvents tool reads the
body as it is. Hub-specific attributes are CloudEvents extensions (lowercase, alphanumeric):
``correlationid``, ``causationid``, ``sequence`` (per-dossier order), ``agency`` and
``procedure`` (what routing keys are made of, so routing never parses ``data``).

``sequence`` is CloudEvents' sequence extension, whose type is String and whose values a
producer MUST keep lexicographically orderable: the hub's per-dossier counter (an int here) is
written as a decimal string zero-padded to ``SEQUENCE_DIGITS`` digits, so that a tool comparing
the strings orders them as the hub does ("0000000000000000010" after "0000000000000000009";
"10" would sort before "9"). Nineteen digits hold any value of the store's BIGINT column, so
every sequence the hub can assign has one spelling, and a reader accepts exactly that spelling.
A system's own counter travels apart, as the string extension ``systemsequence``.

The body bytes are what the signature covers; ``to_bytes`` is called once, by the producer, and
a receiver verifies the bytes it received, never a re-serialisation.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from hub import codes
from hub.errors import InvalidMessage
from hub.jsonbody import DuplicateMember, loads_unique

SPECVERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json"
# X-Road style system identifier: VN:GOV:<agency code>:<system>.
_SOURCE_RE = re.compile(r"^VN:GOV:[0-9A-Z.]+:[a-z0-9][a-z0-9._-]{0,62}$")
_TYPE_RE = re.compile(r"^vn\.gov\.[a-z]+\.[a-z][a-z-]*$")
_REQUIRED = ("id", "source", "type", "subject", "time", "data")
# Width of the sequence's decimal string (see the module's docstring).
SEQUENCE_DIGITS = 19
_SEQUENCE_MAX = 10**SEQUENCE_DIGITS - 1
_SEQUENCE_RE = re.compile(rf"[0-9]{{{SEQUENCE_DIGITS}}}")
# A system's own counter of its events (a province's soThuTu), kept apart from the hub's
# sequence: CloudEvents extension attribute, a string.
SYSTEM_SEQUENCE = "systemsequence"
_KNOWN = frozenset(
    {"specversion", "datacontenttype", "correlationid", "causationid", "sequence", "agency",
     "procedure", *_REQUIRED}
)

# Values that passed check_source / check_type. A relay sees the same few system ids and event
# types on every message and derives its own with the same source each time: checking each
# once keeps the regexes and the agency-code parsing off the per-message path. Bounded, since
# senders choose the values.
_CHECKED_LIMIT = 4096
_good_sources: set[str] = set()
_good_types: set[str] = set()


def _remember(cache: set[str], value: str) -> None:
    if len(cache) >= _CHECKED_LIMIT:
        cache.clear()
    cache.add(value)


def check_source(value: str, field: str = "source") -> str:
    if type(value) is str and value in _good_sources:
        return value
    if not isinstance(value, str) or not _SOURCE_RE.match(value):
        raise InvalidMessage(
            f"{value!r} is not a system identifier; expected 'VN:GOV:<agency code>:<system>' "
            "like 'VN:GOV:000.00.00.H56:igate'",
            code="client.bad_source",
            field=field,
        )
    codes.parse_agency(value.split(":")[2], field)
    _remember(_good_sources, value)
    return value


def sequence_text(value: int) -> str:
    """The wire form of a sequence: decimal, zero-padded to SEQUENCE_DIGITS."""
    if type(value) is not int or not 0 <= value <= _SEQUENCE_MAX:
        raise ValueError(f"a sequence is an int from 0 to {_SEQUENCE_MAX}, got {value!r:.40}")
    return f"{value:0{SEQUENCE_DIGITS}d}"


def parse_sequence(value: Any) -> int:
    """The int of a sequence's wire form; refuses every other spelling (a JSON number, a sign,
    spaces, other widths, non-ASCII digits), since two spellings of one value would not sort
    together."""
    if not isinstance(value, str) or not _SEQUENCE_RE.fullmatch(value):
        raise InvalidMessage(
            f"must be a string of exactly {SEQUENCE_DIGITS} ASCII digits (CloudEvents' sequence "
            f"is a lexicographically orderable string; the hub zero-pads its counter), got "
            f"{value!r:.40}",
            code="client.envelope_invalid",
            field="sequence",
        )
    return int(value)


def check_type(value: str, field: str = "type") -> str:
    if type(value) is str and value in _good_types:
        return value
    if not isinstance(value, str) or not _TYPE_RE.match(value):
        raise InvalidMessage(
            f"{value!r} is not an event type; expected 'vn.gov.<domain>.<event>' like "
            "'vn.gov.dossier.submitted'",
            code="client.bad_type",
            field=field,
        )
    _remember(_good_types, value)
    return value


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str
    source: str
    type: str
    subject: str
    time: datetime
    data: Any
    datacontenttype: str = "application/json"
    correlationid: str | None = None
    causationid: str | None = None
    sequence: int | None = None
    agency: str | None = None
    procedure: str | None = None
    extensions: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(
        cls,
        *,
        source: str,
        type: str,
        subject: str,
        data: Any,
        agency: str | None = None,
        procedure: str | None = None,
        sequence: int | None = None,
        correlationid: str | None = None,
        causationid: str | None = None,
        id: str | None = None,
        time: datetime | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> Envelope:
        check_source(source)
        check_type(type)
        return cls(
            id=id or str(uuid.uuid4()),
            source=source,
            type=type,
            subject=subject,
            time=time or datetime.now(UTC),
            data=data,
            agency=agency,
            procedure=procedure,
            sequence=sequence,
            correlationid=correlationid,
            causationid=causationid,
            extensions=dict(extensions) if extensions else {},
        )

    def derive(self, *, source: str, type: str, data: Any, **changes: Any) -> Envelope:
        """A new message caused by this one: same subject and correlation, causation = this id.
        No sequence: the new event takes its own place in the dossier's sequence, which the hub
        assigns when it keeps or publishes it (hub.intake.sequencing), never the cause's."""
        base = Envelope.new(
            source=source,
            type=type,
            subject=self.subject,
            data=data,
            agency=self.agency,
            procedure=self.procedure,
            correlationid=self.correlationid or self.id,
            causationid=self.id,
        )
        return replace(base, **changes) if changes else base

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": self.time.isoformat(),
            "datacontenttype": self.datacontenttype,
        }
        for name in ("correlationid", "causationid", "agency", "procedure"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.sequence is not None:
            out["sequence"] = sequence_text(self.sequence)
        out.update(self.extensions)
        out["data"] = self.data
        return out

    def to_bytes(self) -> bytes:
        return json.dumps(
            self.to_dict(), ensure_ascii=False, separators=(",", ":"), default=str
        ).encode()

    @classmethod
    def from_dict(cls, doc: Any) -> Envelope:
        if not isinstance(doc, dict):
            raise InvalidMessage("the body is not a JSON object", code="client.unparseable")
        missing = [k for k in _REQUIRED if k not in doc]
        if missing:
            raise InvalidMessage(
                f"the envelope lacks {', '.join(missing)}; every message needs "
                f"{', '.join(_REQUIRED)}",
                code="client.envelope_invalid",
                field=missing[0],
            )
        if doc.get("specversion", SPECVERSION) != SPECVERSION:
            raise InvalidMessage(
                f"specversion {doc['specversion']!r} is not supported; send '1.0'",
                code="client.envelope_invalid",
                field="specversion",
            )
        for name in ("id", "source", "type", "subject", "time"):
            if not isinstance(doc[name], str) or not doc[name]:
                raise InvalidMessage(
                    f"must be a non-empty string, got {doc[name]!r:.60}",
                    code="client.envelope_invalid",
                    field=name,
                )
        try:
            uuid.UUID(doc["id"])
        except ValueError:
            raise InvalidMessage(
                f"{doc['id']!r:.60} is not a UUID; message ids are UUIDs",
                code="client.envelope_invalid",
                field="id",
            ) from None
        try:
            time = datetime.fromisoformat(doc["time"])
        except ValueError:
            raise InvalidMessage(
                f"{doc['time']!r:.60} is not an RFC 3339 timestamp",
                code="client.envelope_invalid",
                field="time",
            ) from None
        if time.tzinfo is None:
            raise InvalidMessage(
                "has no time zone; send an offset such as +07:00 or Z",
                code="client.envelope_invalid",
                field="time",
            )
        seq = doc.get("sequence")
        if seq is not None:
            seq = parse_sequence(seq)
        return cls(
            id=doc["id"],
            source=check_source(doc["source"]),
            type=check_type(doc["type"]),
            subject=doc["subject"],
            time=time,
            data=doc["data"],
            datacontenttype=doc.get("datacontenttype", "application/json"),
            correlationid=doc.get("correlationid"),
            causationid=doc.get("causationid"),
            sequence=seq,
            agency=doc.get("agency"),
            procedure=doc.get("procedure"),
            extensions={k: v for k, v in doc.items() if k not in _KNOWN},
        )

    @classmethod
    def from_bytes(cls, body: bytes) -> Envelope:
        try:
            doc = loads_unique(body)
        except DuplicateMember as exc:
            # Signed bytes that two parsers would read differently (hub.jsonbody).
            raise InvalidMessage(str(exc), code="client.duplicate_key", field=exc.field) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidMessage(
                f"the body is not valid JSON ({exc}); was it truncated?",
                code="client.unparseable",
            ) from None
        except RecursionError:
            # Arrays or objects nested thousands deep exhaust the parser's recursion. Caught
            # rather than measured (no depth scan of every message): as an exception of its
            # own, the consumer would take it for a passing failure and retry the message.
            raise InvalidMessage(
                "the body nests arrays or objects too deeply to be read; no envelope nests "
                "more than a few levels",
                code="client.unparseable",
            ) from None
        return cls.from_dict(doc)


def routing_key(env: Envelope) -> str:
    """``<domain>.<event>.<agency>.<procedure>``, always four segments, dots in codes encoded,
    so that a ministry binds e.g. ``dossier.*.*.2_002492`` or ``*.*.000_00_00_H56.#``."""
    _, _, domain, event = env.type.split(".", 3)
    agency = codes.encode_for_routing(env.agency) if env.agency else "none"
    procedure = codes.encode_for_routing(env.procedure) if env.procedure else "none"
    return f"{domain}.{event}.{agency}.{procedure}"


def derived_id(adapter: str, *parts: object) -> str:
    """An event id derived from what the event describes (uuid5 in the adapter's namespace), so
    that the same fact reported twice (a resent callback, a webhook and a poll) is the same
    message, which the hub's idempotent receivers absorb."""
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"urn:lienthong:adapter:{adapter}")
    return str(uuid.uuid5(namespace, "|".join(map(str, parts))))
