"""Verifying a message's detached JWS (see ``hub.signing.jws``) against the trust store.

``Verifier.verify(body, token, env, attempt=...)`` returns the signer's ``TrustedKey`` or raises
``InvalidMessage`` with one of these codes (cheap checks first, the signature last):

- ``client.missing_signature``: no token.
- ``client.bad_signature``: a garbled token, one that is not detached, one without
  ``b64: false``, or a signature that does not verify over the body bytes.
- ``client.unknown_key``: the kid names no certificate in the trust store.
- ``client.algorithm_mismatch``: the header's alg is not the one pinned for that key (this
  stops ``none``, HS256 with the public key as secret, and RSA/EC swaps).
- ``client.certificate_expired``: the certificate is expired or not yet valid, now.
- ``client.signer_mismatch``: the certificate's CN is not the envelope's source.
- ``client.header_mismatch``: ``lt-id``, ``lt-type`` or ``lt-src`` differ from the envelope.
- ``client.stale_message``: ``iat`` older than ``max_age`` (plus ``retry_grace`` when
  ``attempt > 0``: the hub's retries deliver the same signed bytes later) or more than
  ``clock_skew`` in the future.
- ``client.replayed_id``: with a ``ReplayCache``, an id seen before with another body.

With a ``ReplayCache``, the exact same message seen again within the window raises
``hub.signing.replay.DuplicateMessage`` (not an error): answer as the first time, do not process.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.util import urlsafe_b64decode

from hub.envelope import Envelope
from hub.errors import InvalidMessage
from hub.headers import SIGNATURE
from hub.settings import Settings
from hub.signing.algorithms import ES256, PARSE_REGISTRY, es256_verify, registry
from hub.signing.replay import DuplicateMessage, ReplayCache
from hub.signing.truststore import TrustedKey, TrustStore

_ENVELOPE_HEADERS = (("lt-id", "id"), ("lt-type", "type"), ("lt-src", "source"))
# Signatures verified by this verifier, remembered by digest of token and body: a worker
# process's consumers (the portal's worker and the timeline recorder) receive the same signed
# bytes, and the ES256 check was most of what verifying cost (docs/performance.md). Enough
# for the recorder to run this far ahead of a destination's worker in a backlog.
VERIFIED_CACHE = 100_000


def _invalid(message: str, code: str, field: str | None = None) -> InvalidMessage:
    return InvalidMessage(message, code=code, field=field)


def _when(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, ValueError, OSError):
        return f"unix time {ts}"


class Verifier:
    def __init__(
        self,
        trust: TrustStore,
        *,
        max_age: float,
        clock_skew: float,
        retry_grace: float,
        replay: ReplayCache | None = None,
        clock: Callable[[], float] = time.time,
        relays: frozenset[str] = frozenset(),
    ) -> None:
        self.trust = trust
        # Systems trusted to sign on behalf of any source: the hub, which verified the
        # upstream's own proof at its entry point before it signed.
        self.relays = relays
        self.max_age = max_age
        self.clock_skew = clock_skew
        self.retry_grace = retry_grace
        self.replay = replay
        self.clock = clock
        # digest of (token, body) -> its protected header and the key it verified under
        # (checked again if the trust store's key for its kid changed).
        self._verified: dict[bytes, tuple[dict[str, Any], TrustedKey]] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        trust: TrustStore | None = None,
        *,
        replay: ReplayCache | None = None,
        queued: bool = False,
    ) -> Verifier:
        """A verifier with the settings' age window. The retry grace is the sum of the retry
        tiers: how much later than its first delivery the last retry can arrive. ``queued``
        is for consumers of the hub's own queues, where a message may wait through an outage:
        their window is ``queued_max_age``. The hub's own id is accepted as a relay."""
        return cls(
            trust or TrustStore(settings.trust_dir),
            relays=frozenset({settings.hub_id}),
            max_age=settings.queued_max_age if queued else settings.signature_max_age,
            clock_skew=settings.clock_skew,
            retry_grace=sum(settings.retry_tiers),
            replay=replay,
        )

    def verify(
        self,
        body: bytes,
        token: str | bytes | None,
        env: Envelope,
        *,
        attempt: int = 0,
        header_name: str = SIGNATURE,
    ) -> TrustedKey:
        """``header_name`` is where the sender put ``token``, named in refusals: the AMQP
        header on the broker, ``X-Signature`` at the REST entry point."""
        if not token:
            raise _invalid(
                f"message {env.id} carries no signature; sign the body and send the detached "
                f"JWS in the {header_name} header",
                "client.missing_signature",
                header_name,
            )
        raw = token.encode() if isinstance(token, str) else bytes(token)
        seen = hashlib.sha256(len(raw).to_bytes(4, "big") + raw + body).digest()
        remembered = self._verified.get(seen)
        obj: jws.CompactSignature | None = None
        if remembered is not None:
            header, verified_with = remembered
        else:
            obj = self._parse(raw, body, header_name)
            header, verified_with = obj.headers(), None
        kid = header.get("kid")
        key = self.trust.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise _invalid(
                f"no trusted certificate has kid {kid!r:.60} (signer claims to be "
                f"{env.source}); add the signer's certificate with `lienthong keys trust "
                "FILE.pem`, or sign with a key whose certificate is trusted",
                "client.unknown_key",
                "kid",
            )
        alg = header.get("alg")
        if alg != key.alg:
            raise _invalid(
                f"the signature says alg {alg!r:.20} but the key {key.kid} of {key.system_id} "
                f"is pinned to {key.alg}; sign with {key.alg} (or pin the key to another "
                "algorithm in the trust store's pins.toml)",
                "client.algorithm_mismatch",
                "alg",
            )
        now = self.clock()
        if now < key.valid_from:
            raise _invalid(
                f"the certificate of {key.system_id} (kid {key.kid}) is not valid before "
                f"{_when(key.valid_from)}; check the signer's clock or its certificate",
                "client.certificate_expired",
                "kid",
            )
        if now >= key.valid_until:
            raise _invalid(
                f"the certificate of {key.system_id} (kid {key.kid}) expired on "
                f"{_when(key.valid_until)}; renew it with `lienthong keys generate` and add "
                "it to the trust store",
                "client.certificate_expired",
                "kid",
            )
        if key.system_id != env.source and key.system_id not in self.relays:
            raise _invalid(
                f"message {env.id} says its source is {env.source} but is signed by "
                f"{key.system_id}; a system signs only its own messages",
                "client.signer_mismatch",
                "source",
            )
        for name, attr in _ENVELOPE_HEADERS:
            expected = getattr(env, attr)
            if header.get(name) != expected:
                raise _invalid(
                    f"the signature's {name} is {header.get(name)!r:.80} but the envelope's "
                    f"{attr} is {expected!r}; the signature belongs to another message",
                    "client.header_mismatch",
                    name,
                )
        self._check_age(header.get("iat"), now, env, attempt)
        # Only the parsing and the cryptography are remembered: every check above ran on this
        # message again.
        if verified_with is not key:
            if obj is None:
                obj = self._parse(raw, body, header_name)
            self._check_signature(obj, key, header_name)
            verified = self._verified
            if len(verified) >= VERIFIED_CACHE:
                verified.pop(next(iter(verified)), None)  # the oldest
            verified[seen] = (header, key)
        if self.replay is not None and self.replay.check(
            env.id, hashlib.sha256(body).digest(), now
        ):
            raise DuplicateMessage(env.id, key.system_id)
        return key

    def _parse(self, raw: bytes, body: bytes, header_name: str) -> jws.CompactSignature:
        parts = raw.split(b".")
        if len(parts) != 3:
            raise _invalid(
                f"the signature has {len(parts)} dot-separated parts; expected a detached "
                "compact JWS '<protected>..<signature>'",
                "client.bad_signature",
                header_name,
            )
        if parts[1]:
            # joserfc would verify an embedded payload instead of the body: refuse it.
            raise _invalid(
                "the signature embeds a payload; send a detached JWS '<protected>..<signature>' "
                "over the body bytes",
                "client.bad_signature",
                header_name,
            )
        try:
            obj = jws.extract_compact(raw, body, PARSE_REGISTRY)
        except JoseError as exc:
            raise _invalid(
                f"the signature cannot be read ({exc}); expected a detached compact JWS with "
                "base64url parts",
                "client.bad_signature",
                header_name,
            ) from None
        if not isinstance(obj.headers(), dict):
            raise _invalid(
                "the signature's protected header is not a JSON object",
                "client.bad_signature",
                header_name,
            )
        if obj.headers().get("b64") is not False:
            raise _invalid(
                "the signature's header lacks b64: false (with crit: ['b64']); sign the body "
                "bytes unencoded as RFC 7797 describes",
                "client.bad_signature",
                "b64",
            )
        return obj

    def _check_age(self, iat: object, now: float, env: Envelope, attempt: int) -> None:
        if not isinstance(iat, int) or isinstance(iat, bool):
            raise _invalid(
                f"the signature's iat is {iat!r:.40}; it must be the signing time in unix seconds",
                "client.stale_message",
                "iat",
            )
        age = now - iat
        limit = self.max_age + (self.retry_grace if attempt > 0 else 0.0)
        if age > limit:
            raise _invalid(
                f"message {env.id} was signed at {_when(iat)}, {age:.0f} s ago, more than the "
                f"{limit:.0f} s allowed; send a freshly signed message with a new id",
                "client.stale_message",
                "iat",
            )
        if -age > self.clock_skew:
            raise _invalid(
                f"message {env.id} is signed {-age:.0f} s in the future ({_when(iat)}), more "
                f"than the {self.clock_skew:.0f} s of clock skew allowed; fix the sender's clock",
                "client.stale_message",
                "iat",
            )

    def _check_signature(
        self, obj: jws.CompactSignature, key: TrustedKey, header_name: str
    ) -> None:
        try:
            if key.alg == ES256:
                ok = _validate_es256(obj, key)
            else:
                ok = jws.validate_compact(obj, key.jose_key, registry=registry(key.alg))
        except JoseError as exc:
            raise _invalid(
                f"the signature of {key.system_id} cannot be checked ({exc}); sign with "
                f"{key.alg} and only the hub's header parameters",
                "client.bad_signature",
                header_name,
            ) from None
        if not ok:
            raise _invalid(
                f"the signature does not match the body under the certificate of "
                f"{key.system_id} (kid {key.kid}); the body was changed after signing or was "
                "signed with another key",
                "client.bad_signature",
                header_name,
            )


def _validate_es256(obj: jws.CompactSignature, key: TrustedKey) -> bool:
    """``jws.validate_compact`` for an ES256 key, the checks in its order (the header against
    the algorithm's registry, the algorithm allowed, the signature over "<header>.<body>"),
    the ECDSA check straight on cryptography (see hub.signing.algorithms.es256_verify). The key
    is a P-256 key pinned to ES256 (TrustedKey made sure of both)."""
    reg = registry(ES256)
    headers = obj.headers()
    reg.check_header(headers)
    reg.get_alg(headers["alg"])
    try:
        signature = urlsafe_b64decode(obj.segments["signature"])
    except (TypeError, ValueError):
        return False
    public = key.public_key
    assert isinstance(public, ec.EllipticCurvePublicKey)  # key_family: ES256 is P-256 only
    return es256_verify(public, obj.segments["header"] + b"." + obj.segments["payload"],
                        signature)
