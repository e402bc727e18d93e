"""The trust store: the certificates of the systems whose signatures the hub accepts.

A directory (``Settings.trust_dir``, ``<data_dir>/trust``) of PEM files, ``*.pem``, each holding
one or more X.509 certificates whose subject CN is a system id. ``add`` names the files it writes
``<stem>_<kid prefix>.pem`` (stem as in ``hub.signing.keys``); any other name works as well,
the contents decide. A system may have several certificates at once (during a key rotation).

Each certificate is pinned to one algorithm: its key type's default (EC P-256 ES256, RSA RS256,
Ed25519 EdDSA) unless ``pins.toml`` in the directory pins its kid or its system id to another
(PS256 for an RSA key that signs with PSS). A message whose header names another algorithm is
refused, whatever it claims.

Certificates are parsed once, at load; ``get`` is a dict lookup. The store notices new files by
itself: at most every ``check_interval`` seconds, and whenever a kid is unknown, it compares the
directory's and pins.toml's modification times with those it loaded and reloads on a change.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from joserfc.jwk import Key

from hub.errors import ConfigError
from hub.files import PUBLIC_FILE, private_dir, write_atomic
from hub.signing import pins
from hub.signing.algorithms import VerifyingKey, check_alg, default_alg, jose_key
from hub.signing.keys import (
    file_stem,
    kid_of,
    parse_certificates,
    public_key_of,
    system_id_of,
)

log = logging.getLogger(__name__)

# A directory modified this recently may change again within the same timestamp tick; such a
# snapshot is not trusted to be final and is checked again (the "racy git" problem).
_RACY_SECONDS = 2.0

_Stamp = tuple[int, int]


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A trusted certificate, parsed, with its pinned algorithm and ready joserfc key."""

    kid: str
    system_id: str
    alg: str
    cert: x509.Certificate
    public_key: VerifyingKey
    not_before: datetime
    not_after: datetime
    path: Path | None
    jose_key: Key
    # Validity as unix seconds, for the per-message check.
    valid_from: float
    valid_until: float

    @classmethod
    def from_certificate(
        cls, cert: x509.Certificate, *, alg: str | None = None, path: Path | None = None
    ) -> TrustedKey:
        public = public_key_of(cert)
        kid = kid_of(cert)
        chosen = check_alg(alg or default_alg(public), public)
        not_before = cert.not_valid_before_utc
        not_after = cert.not_valid_after_utc
        return cls(
            kid=kid,
            system_id=system_id_of(cert),
            alg=chosen,
            cert=cert,
            public_key=public,
            not_before=not_before,
            not_after=not_after,
            path=path,
            jose_key=jose_key(public, kid=kid, alg=chosen),
            valid_from=not_before.timestamp(),
            valid_until=not_after.timestamp(),
        )

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


class TrustStore:
    def __init__(self, directory: Path, *, check_interval: float = 1.0) -> None:
        self.directory = Path(directory)
        self.check_interval = check_interval
        self._by_kid: dict[str, TrustedKey] = {}
        self._stamp: _Stamp | None = None
        self._racy = False
        self._failed_stamp: _Stamp | None = None
        self._next_check = 0.0
        self.reload()

    def reload(self) -> None:
        """Read the directory again. Raises ConfigError naming the file at fault; the store
        then keeps what it had."""
        stamp = self._read_stamp()
        self._by_kid = _load(self.directory)
        self._stamp = stamp
        self._racy = stamp is not None and time.time() - max(stamp) / 1e9 < _RACY_SECONDS
        self._failed_stamp = None
        self._next_check = time.monotonic() + self.check_interval

    def get(self, kid: str) -> TrustedKey | None:
        now = time.monotonic()
        if now >= self._next_check:
            self._refresh(now, periodic=True)
        key = self._by_kid.get(kid)
        if key is None and self._refresh(now, periodic=False):
            key = self._by_kid.get(kid)
        return key

    def entries(self) -> list[TrustedKey]:
        return sorted(self._by_kid.values(), key=lambda k: (k.system_id, k.not_before, k.kid))

    def __len__(self) -> int:
        return len(self._by_kid)

    def add(
        self, pem: bytes, *, alg: str | None = None, now: datetime | None = None
    ) -> TrustedKey:
        """Validate one PEM certificate and copy it into the directory; ``alg`` pins its kid
        (e.g. PS256). Adding a certificate already present only updates its pin."""
        certs = parse_certificates(pem, "the file")
        if len(certs) != 1:
            raise ConfigError(
                f"the file holds {len(certs)} certificates; add one system's certificate at a time"
            )
        key = TrustedKey.from_certificate(certs[0], alg=alg)
        at = now or datetime.now(UTC)
        if key.not_after <= at:
            raise ConfigError(
                f"the certificate of {key.system_id} expired on {key.not_after:%Y-%m-%d %H:%M} "
                "UTC; ask its owner for a renewed certificate"
            )
        private_dir(self.directory)
        known = self._by_kid.get(key.kid)
        if known is None or known.path is None or not known.path.exists():
            path = self.directory / f"{file_stem(key.system_id)}_{key.kid[:16]}.pem"
            write_atomic(path, key.pem(), PUBLIC_FILE)
        if alg is not None:
            default = default_alg(key.public_key)
            pins.set_pin(self.directory, key.kid, None if alg == default else alg)
        self.reload()
        return self._by_kid[key.kid]

    def _read_stamp(self) -> _Stamp | None:
        try:
            dir_mtime = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            return None
        try:
            pins_mtime = os.stat(self.directory / pins.FILENAME).st_mtime_ns
        except FileNotFoundError:
            pins_mtime = 0
        return (dir_mtime, pins_mtime)

    def _refresh(self, now: float, *, periodic: bool) -> bool:
        """Reload if the directory changed since the last load (or, on the periodic check, if
        that load was racy); True if it reloaded. A broken file leaves the previous contents in
        use (logged once per change), so a running consumer keeps working while the operator
        fixes it."""
        if periodic:
            self._next_check = now + self.check_interval
        stamp = self._read_stamp()
        if stamp == self._failed_stamp and stamp is not None:
            return False
        if stamp == self._stamp and not (periodic and self._racy):
            return False
        try:
            self.reload()
        except ConfigError as exc:
            if stamp is not None and time.time() - max(stamp) / 1e9 < _RACY_SECONDS:
                return False  # maybe a file still being copied in: look again at the next check
            self._failed_stamp = stamp
            log.error("trust store %s not reloaded, keeping the previous one: %s",
                      self.directory, exc.message)
            return False
        return True


def _load(directory: Path) -> dict[str, TrustedKey]:
    if not directory.is_dir():
        return {}
    pinned = pins.read_pins(directory)
    found: dict[str, TrustedKey] = {}
    for path in sorted(directory.glob("*.pem")):
        if path.name.startswith("."):
            continue
        try:
            for cert in parse_certificates(path.read_bytes(), str(path)):
                kid = kid_of(cert)
                alg = pinned.get(kid) or pinned.get(system_id_of(cert))
                found[kid] = TrustedKey.from_certificate(cert, alg=alg, path=path)
        except ConfigError as exc:
            if exc.message.startswith(str(path)):
                raise
            raise ConfigError(f"{path}: {exc.message}") from None
    return found
