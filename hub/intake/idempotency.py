"""Idempotency: a request sent again is answered as the first time, never kept twice.

A request is remembered (``hub.intake.tables``, ``intake_idempotency``) under the client's key
(its ``Idempotency-Key``; REST ``request:<lt-id>`` without one; SOAP its ``idempotencyKey`` or
``xmldsig:<digest>``) and, for a signed REST request, under the key of its signed content
(``signed_request_key``): the ``Idempotency-Key`` header is outside the signature, so a
captured request sent again under new keys is the same request all the same. The writer checks
the signed content's key first (``answer_replayed``), then the client's (``answer_known``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from hub.errors import ValidationError
from hub.intake.errors import IdempotencyConflict
from hub.intake.jobs import Accepted
from hub.intake.tables import Remembered

IDEMPOTENCY_HEADER = "Idempotency-Key"
# Idempotency rows of a signed request's content (signed_request_key), beside the client's.
SIGNED_KEY_PREFIX = "signed:"
_MAX_KEY = 255


def request_digest(event_type: str, data: Any) -> str:
    """Digest of a request's meaning (type and body, key order ignored): a resubmission under
    the same Idempotency-Key must have the same digest."""
    text = json.dumps([event_type, data], sort_keys=True, separators=(",", ":"), default=str,
                      ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key or len(key) > _MAX_KEY or not key.isprintable():
        raise ValidationError(
            f"must be 1 to {_MAX_KEY} printable characters (a UUID is a good choice), got "
            f"{len(key)} characters", field=IDEMPOTENCY_HEADER)
    return key


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A REST request whose signature verified: its request id (the JWS ``lt-id``) and the key
    of what it signed (``signed_request_key``)."""

    id: str
    replay_key: str


def signed_request_key(token: str, body: bytes) -> str:
    """The idempotency key of a signed request's signed content: its JWS protected header as
    sent (the signing input takes it as it is, so no other spelling verifies) and the digest
    of the body it covers.

    Not the ``Idempotency-Key`` header, which is outside the signature: anyone holding a
    captured request could send it again under new keys, one message each. Nor the signature
    text, which can be respelled without breaking it (an ECDSA signature's s turned into
    n - s verifies as well), and differs each time the same input is signed (ECDSA and PSS
    are randomised): the signed content is one."""
    protected = token.split(".", 1)[0].encode()
    digest = hashlib.sha256(protected + b"." + hashlib.sha256(body).digest()).hexdigest()
    return f"{SIGNED_KEY_PREFIX}{digest}"


def peek_request_id(token: str | None) -> str:
    """The ``lt-id`` of a detached JWS, read before verification (verification then checks it
    against the signed header). Empty when unreadable: the verifier explains why."""
    if not token:
        return ""
    try:
        protected = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
    except (ValueError, UnicodeDecodeError):
        return ""
    value = header.get("lt-id") if isinstance(header, dict) else None
    return value if isinstance(value, str) else ""


def answer_known(known: Remembered, digest: str, key: str) -> Accepted:
    if known.request_sha256 != digest:
        raise IdempotencyConflict(
            f"the Idempotency-Key {key!r:.60} was used before for a different request "
            f"(message {known.message_id}); use a new key for a new request",
            field=IDEMPOTENCY_HEADER)
    return Accepted(known.message_id, duplicate=True)


def answer_replayed(known: Remembered, digest: str) -> Accepted:
    if known.request_sha256 != digest:
        # The same signed bytes for another request: the path (a dossier code the body leaves
        # out) is not signed, and the signature counts once.
        raise IdempotencyConflict(
            f"this signed request was already kept, as message {known.message_id}, for "
            "another path; a signature counts for one request: sign each request anew "
            "(a new lt-id)", code="client.replayed_id", field="X-Signature")
    return Accepted(known.message_id, duplicate=True)
