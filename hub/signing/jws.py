"""Signing a message: a detached compact JWS (RFC 7515) with an unencoded payload (RFC 7797,
``b64: false``, ``crit: ["b64"]``) over the exact body bytes, made by joserfc.

The token is ``<protected>..<signature>``; the body travels as the message body and is never
copied into the token. The protected header carries ``alg``, ``kid``, ``b64``, ``crit``, ``iat``
and the envelope's ``lt-id``, ``lt-type`` and ``lt-src``, so a token cannot be moved onto
another message.

A ``Signer`` is built once per process: the joserfc key, the registry and the constant half of
the header are prepared up front, so ``sign`` costs the signature itself plus a small JSON
header.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws
from joserfc.util import urlsafe_b64encode

from hub.envelope import Envelope, check_source
from hub.errors import ConfigError
from hub.signing import pins
from hub.signing.algorithms import (
    ES256,
    SigningKey,
    check_alg,
    default_alg,
    es256_sign,
    jose_key,
    registry,
)
from hub.signing.keys import (
    KeyFiles,
    kid_of,
    load_certificate,
    load_private_key,
    public_key_of,
    same_public_key,
    system_id_of,
)


class Signer:
    """Signs bodies as the system named by its certificate's CN."""

    def __init__(
        self,
        private_key: SigningKey,
        certificate: x509.Certificate,
        alg: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        relay: bool = False,
    ) -> None:
        if not same_public_key(public_key_of(certificate), private_key.public_key()):
            raise ConfigError(
                f"the certificate of {system_id_of(certificate)} does not belong to this private "
                "key; pair each key with the certificate issued for it"
            )
        self.alg = check_alg(alg or default_alg(private_key), private_key)
        self.certificate = certificate
        self.kid = kid_of(certificate)
        self.system_id = system_id_of(certificate)
        self.not_after = certificate.not_valid_after_utc
        self._clock = clock
        # A relay (the hub itself) signs messages of other sources after it verified them at
        # its entry points; receivers accept that only from systems they list as relays.
        self.relay = relay
        self._key = jose_key(private_key, kid=self.kid, alg=self.alg)
        self._registry = registry(self.alg)
        # ES256 (the default) is signed without joserfc, to the same token (see
        # hub.signing.algorithms.es256_sign); the other algorithms go through joserfc.
        self._es256 = (private_key if self.alg == ES256
                       and isinstance(private_key, ec.EllipticCurvePrivateKey) else None)
        self._fixed: dict[str, Any] = {
            "alg": self.alg,
            "kid": self.kid,
            "b64": False,
            "crit": ["b64"],
        }

    def sign(self, body: bytes, env: Envelope) -> str:
        """The detached token for ``body``, whose envelope is ``env``."""
        if env.source != self.system_id and not self.relay:
            # A receiver insists that the signer is the source; fail here, where the bug is.
            raise ConfigError(
                f"signer {self.system_id} cannot sign a message whose source is {env.source}; "
                "sign with the source system's key or set the envelope's source to "
                f"{self.system_id}",
                field="source",
            )
        header = {
            **self._fixed,
            "iat": int(self._clock()),
            "lt-id": env.id,
            "lt-type": env.type,
            "lt-src": env.source,
        }
        if self._es256 is not None:
            # What joserfc's serialize_compact does for this header, detached: the same header
            # checks, the same JSON and base64url, the signature over "<header>.<body>".
            self._registry.check_header(header)
            segment = urlsafe_b64encode(
                json.dumps(header, ensure_ascii=True, separators=(",", ":")).encode("ascii"))
            signature = es256_sign(self._es256, segment + b"." + body)
            return (segment + b".." + urlsafe_b64encode(signature)).decode("ascii")
        token = jws.serialize_compact(header, body, self._key, registry=self._registry)
        # joserfc embeds an unencoded payload made only of URL-safe characters; ours is
        # always detached.
        return jws.detach_content(token)

    def __repr__(self) -> str:
        return f"Signer(system_id={self.system_id!r}, alg={self.alg!r}, kid={self.kid!r})"


def load_signer(
    keys_dir: Path, system_id: str, *, now: datetime | None = None, relay: bool = False
) -> Signer:
    """The signer of ``system_id`` from its files in ``keys_dir`` (see ``hub.signing.keys``).
    The algorithm is the key type's default unless ``pins.toml`` there pins the kid or the
    system. Refuses an expired certificate: nobody would accept what it signs."""
    check_source(system_id, "system_id")
    files = KeyFiles.of(keys_dir, system_id)
    if not files.key.exists():
        raise ConfigError(
            f"no private key for {system_id} at {files.key}; create one with "
            f"`lienthong keys generate --system {system_id}`",
            field="system_id",
        )
    if not files.certificate.exists():
        hint = (
            "install the certificate the CA issued from its CSR with `lienthong keys install`"
            if files.csr.exists()
            else f"create a key and certificate with `lienthong keys generate --system {system_id}`"
        )
        raise ConfigError(f"no certificate for {system_id} at {files.certificate}; {hint}")
    key = load_private_key(files.key)
    cert = load_certificate(files.certificate)
    if system_id_of(cert) != system_id:
        raise ConfigError(
            f"{files.certificate} is the certificate of {system_id_of(cert)}, not {system_id}; "
            "put each system's certificate under its own name"
        )
    at = now or datetime.now(UTC)
    if cert.not_valid_after_utc <= at:
        raise ConfigError(
            f"the certificate of {system_id} expired on {cert.not_valid_after_utc:%Y-%m-%d}; "
            f"renew it with `lienthong keys generate --system {system_id} --force` and give "
            "peers the new certificate"
        )
    pinned = pins.read_pins(keys_dir)
    alg = pinned.get(kid_of(cert)) or pinned.get(system_id)
    return Signer(key, cert, alg, relay=relay)
