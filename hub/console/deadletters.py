"""What a parked message says about itself: the row the keeper writes for it. Pure functions
of the broker's properties, headers and body."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hub import codes
from hub import headers as h
from hub.broker.names import Names
from hub.envelope import Envelope
from hub.errors import HubError
from hub.store.operators import digest_of

# The kinds of reason an operator filters by.
RETRIES_EXHAUSTED = "retries exhausted"
DELIVERY_LIMIT = "delivery limit"
INVALID_SIGNATURE = "invalid signature"
SCHEMA = "schema"
UNROUTABLE = "unroutable"
REFUSED = "refused"
KINDS = (RETRIES_EXHAUSTED, DELIVERY_LIMIT, INVALID_SIGNATURE, SCHEMA, UNROUTABLE, REFUSED)

SIGNATURE_CODES = frozenset({
    "client.algorithm_mismatch", "client.bad_signature", "client.certificate_expired",
    "client.header_mismatch", "client.missing_signature", "client.replayed_id",
    "client.signer_mismatch", "client.stale_message", "client.unknown_key",
})
_PARTITION = re.compile(r"\.p\d+$")
REDELIVERY_HEADERS = frozenset({"x-delivery-count"})


def jsonable(value: Any) -> Any:
    """AMQP header values as JSON: bytes as text (base64 when they are not UTF-8), times as
    ISO 8601, decimals as text."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def destination_of(headers: Mapping[str, Any], names: Names) -> str | None:
    """The destination whose worker gave up (lt-parked-by ``worker:<dest>``), or whose work
    queue the broker dead-lettered it from (delivery limit)."""
    by = headers.get(h.PARKED_BY)
    if isinstance(by, str) and ":" in by:
        return by.split(":", 1)[1]
    queue = headers.get("x-first-death-queue")
    prefix = names.work("")
    if isinstance(queue, str) and queue.startswith(prefix):
        return _PARTITION.sub("", queue[len(prefix):]) or None
    return None


def kind_of(role: str, headers: Mapping[str, Any], code: str, reason: str) -> str:
    if role == "unroutable":
        return UNROUTABLE
    if code in SIGNATURE_CODES:
        return INVALID_SIGNATURE
    if role == "invalid":
        return SCHEMA
    if h.REASON_CODE not in headers and headers.get("x-first-death-reason") == "delivery_limit":
        return DELIVERY_LIMIT
    if reason.startswith("gave up after"):
        return RETRIES_EXHAUSTED
    return REFUSED


def row_of(role: str, queue: str, names: Names, *, message_id: str | None, app_id: str | None,
           type: str | None, raw_headers: Mapping[str, Any] | None, body: bytes,
           now: datetime) -> dict[str, Any]:
    """The fields of ``hub.store.operators.add_dead_letter`` for one parked message, taken from
    its queue's role (dead, invalid, unroutable), its properties, headers and body."""
    headers: dict[str, Any] = jsonable(dict(raw_headers or {}))
    # A quorum queue counts redeliveries in x-delivery-count: a redelivery is the same copy.
    digest = digest_of(body, {k: v for k, v in headers.items() if k not in REDELIVERY_HEADERS},
                       queue)
    source, event_type, subject = app_id, type, None
    try:
        env = Envelope.from_bytes(body)
        source, event_type, subject = env.source, env.type, env.subject
        message_id = message_id or env.id
    except (HubError, ValueError):
        pass  # a body that is no envelope is kept as it came; the row says what is known
    message_id = message_id or "sha256:" + hashlib.sha256(body).hexdigest()
    code = str(headers.get(h.REASON_CODE) or "")
    reason = str(headers.get(h.REASON) or "")
    if not code:
        if role == "unroutable":
            code, reason = "server.unroutable", "no queue is bound for its routing key"
        elif headers.get("x-first-death-reason") == "delivery_limit":
            code = "server.delivery_limit"
            reason = ("redelivered more often than the delivery limit (a consumer stopped "
                      "on it each time)")
        else:
            code = "server.parked"
            reason = reason or "parked without a reason header"
    history = headers.get(h.HISTORY)
    entries = [e for e in history if isinstance(e, dict)] if isinstance(history, list) else []
    times = [t for t in (_time(e.get("at")) for e in entries) if t is not None]
    parked_at = _time(headers.get(h.PARKED_AT)) or now
    dossier, agency = None, None
    if subject:
        try:
            parsed = codes.parse_dossier(subject)
            dossier, agency = parsed.value, parsed.agency.value
        except HubError:
            pass
    if agency is None and source and source.count(":") >= 3:
        agency = source.split(":")[2]
    replay_of = headers.get(h.REPLAY_OF)
    attempts = headers.get(h.ATTEMPT)
    return {
        "message_id": message_id, "queue": queue, "reason_code": code, "reason": reason,
        "body": body, "parked_at": parked_at,
        "attempts": int(attempts) + 1 if isinstance(attempts, int) else len(entries),
        "headers": headers, "source": source, "destination": destination_of(headers, names),
        "type": event_type, "agency": agency, "digest": digest,
        "kind": kind_of(role, headers, code, reason), "dossier_code": dossier,
        "first_failure_at": min(times) if times else parked_at,
        "last_failure_at": max(times) if times else parked_at,
        "history": entries,
        "replay_of": int(replay_of) if isinstance(replay_of, int) or (
            isinstance(replay_of, str) and replay_of.isdigit()) else None,
    }
