"""Key pairs and certificates of the systems that sign through the hub.

A system's key is named by its system id (``VN:GOV:<agency>:<system>``), turned into a file stem
by ``file_stem``: colons become ``_`` and the agency code's dots ``-``, e.g.
``VN:GOV:000.00.00.H56:igate`` -> ``VN_GOV_000-00-00-H56_igate``. An agency code holds neither
``_`` nor ``-``, so ``system_id_from_stem`` reverses it exactly (the system part is kept as is).

Files under ``Settings.keys_dir`` (``<data_dir>/keys``, created with mode 0700):

- ``<stem>.key.pem``: the private key, unencrypted PKCS#8 PEM, mode 0600.
- ``<stem>.crt.pem``: its X.509 certificate, self-signed by ``generate`` or issued by the
  government CA from the CSR and put in place by ``install_certificate``.
- ``<stem>.csr.pem``: the certificate signing request, when ``generate(..., csr=True)``.
- ``pins.toml``: the algorithm of a key that does not use its type's default (PS256 for RSA,
  Ed25519 for an Ed25519 key), keyed by system id (see ``hub.signing.pins``).

The certificate's subject CN is the system id; ``kid`` is the base64url (no padding) SHA-256 of
the certificate's DER. Peers' certificates live in the trust store (``hub.signing.truststore``).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from hub.envelope import check_source
from hub.errors import CodeError, ConfigError, InvalidMessage
from hub.files import PRIVATE_FILE, PUBLIC_FILE, private_dir, write_atomic
from hub.signing import pins
from hub.signing.algorithms import (
    ALGORITHMS,
    RSA,
    SigningKey,
    VerifyingKey,
    check_alg,
    default_alg,
    key_family,
)

KEY_SUFFIX = ".key.pem"
CERT_SUFFIX = ".crt.pem"
CSR_SUFFIX = ".csr.pem"
RSA_BITS = 2048
# A fresh certificate is valid from a little before now, so that a peer whose clock runs behind
# does not see it as not yet valid.
BACKDATE = timedelta(minutes=5)
_STEM_PREFIX = "VN_GOV_"


def file_stem(system_id: str) -> str:
    """Reversible, filename-safe form of a system id: ``VN_GOV_000-00-00-H56_igate``."""
    check_source(system_id, "system_id")
    _, _, agency, system = system_id.split(":", 3)
    return f"{_STEM_PREFIX}{agency.replace('.', '-')}_{system}"


def system_id_from_stem(stem: str) -> str:
    """Inverse of ``file_stem``."""
    rest = stem.removeprefix(_STEM_PREFIX)
    agency, sep, system = rest.partition("_")
    if rest == stem or not sep:
        raise ValueError(f"{stem!r} is not a key file stem like 'VN_GOV_000-00-00-H56_igate'")
    system_id = f"VN:GOV:{agency.replace('-', '.')}:{system}"
    check_source(system_id, "system_id")
    return system_id


def kid_of(cert: x509.Certificate) -> str:
    """Base64url, unpadded, of the SHA-256 of the certificate's DER (RFC 7515 x5t#S256)."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def system_id_of(cert: x509.Certificate) -> str:
    """The certificate's subject CN, which must be a system id."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise ConfigError(
            f"the certificate subject {cert.subject.rfc4514_string()!r} has {len(names)} CN "
            "attributes; it needs exactly one, the system id like 'VN:GOV:000.00.00.H56:igate'"
        )
    value = names[0].value
    cn = value if isinstance(value, str) else value.decode()
    try:
        return check_source(cn, "CN")
    except (InvalidMessage, CodeError):
        raise ConfigError(
            f"the certificate's CN {cn!r} is not a system id; it must look like "
            "'VN:GOV:000.00.00.H56:igate'",
            field="CN",
        ) from None


def public_key_of(cert: x509.Certificate) -> VerifyingKey:
    key = cert.public_key()
    key_family(key)  # refuses key types the hub does not sign with
    assert isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey)
    return key


def same_public_key(a: VerifyingKey, b: VerifyingKey) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return a.public_bytes(*fmt) == b.public_bytes(*fmt)


@dataclass(frozen=True, slots=True)
class KeyFiles:
    """Where a system's key, certificate and CSR live in a keys directory."""

    key: Path
    certificate: Path
    csr: Path

    @classmethod
    def of(cls, keys_dir: Path, system_id: str) -> KeyFiles:
        stem = file_stem(system_id)
        return cls(
            keys_dir / f"{stem}{KEY_SUFFIX}",
            keys_dir / f"{stem}{CERT_SUFFIX}",
            keys_dir / f"{stem}{CSR_SUFFIX}",
        )


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """A new key pair with either a self-signed certificate or a CSR for the CA."""

    system_id: str
    alg: str
    private_key: SigningKey
    certificate: x509.Certificate | None = None
    csr: x509.CertificateSigningRequest | None = None

    @property
    def kid(self) -> str | None:
        return kid_of(self.certificate) if self.certificate is not None else None

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def certificate_pem(self) -> bytes:
        if self.certificate is None:
            raise ValueError("this key material has a CSR, not a certificate")
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def csr_pem(self) -> bytes:
        if self.csr is None:
            raise ValueError("this key material has a certificate, not a CSR")
        return self.csr.public_bytes(serialization.Encoding.PEM)

    def save(self, keys_dir: Path, *, overwrite: bool = False) -> KeyFiles:
        """Write the key (mode 0600) and the certificate or CSR; record a non-default
        algorithm in the keys directory's pins.toml. An existing key is replaced only with
        ``overwrite``: losing a private key cannot be undone."""
        files = KeyFiles.of(keys_dir, self.system_id)
        if files.key.exists() and not overwrite:
            raise ConfigError(
                f"a key for {self.system_id} already exists at {files.key}; pass "
                "overwrite=True (`lienthong keys generate --force`) to replace it",
                field="system_id",
            )
        private_dir(keys_dir)
        _write_private(files.key, self.private_pem())
        if self.certificate is not None:
            _write_public(files.certificate, self.certificate_pem())
            files.csr.unlink(missing_ok=True)
        else:
            _write_public(files.csr, self.csr_pem())
            # An old certificate does not belong to the new key.
            files.certificate.unlink(missing_ok=True)
        pinned = None if self.alg == default_alg(self.private_key) else self.alg
        pins.set_pin(keys_dir, self.system_id, pinned)
        return files


def new_private_key(alg: str, *, rsa_bits: int = RSA_BITS) -> SigningKey:
    if alg not in ALGORITHMS:
        raise ConfigError(
            f"algorithm {alg!r} is not supported; choose one of {', '.join(ALGORITHMS)}",
            field="alg",
        )
    key: SigningKey
    if alg == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif alg in ("RS256", "PS256"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    return key


def _signature_hash(key: SigningKey) -> hashes.SHA256 | None:
    # Ed25519 hashes internally; X.509 builders take None for it.
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _name(system_id: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, system_id.split(":")[2]),
            x509.NameAttribute(NameOID.COMMON_NAME, system_id),
        ]
    )


def generate(
    system_id: str,
    alg: str = "ES256",
    days: int = 365,
    *,
    csr: bool = False,
    rsa_bits: int = RSA_BITS,
    now: datetime | None = None,
) -> KeyMaterial:
    """A new key pair for ``system_id`` and a self-signed certificate valid for ``days`` (or,
    with ``csr``, a certificate signing request for the government CA). Nothing is written:
    call ``save``."""
    check_source(system_id, "system_id")
    if days < 1:
        raise ConfigError(f"days must be at least 1, got {days}", field="days")
    key = new_private_key(alg, rsa_bits=rsa_bits)
    check_alg(alg, key)
    name = _name(system_id)
    if csr:
        request = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(name)
            .add_extension(_key_usage(), critical=True)
            .sign(key, _signature_hash(key))
        )
        return KeyMaterial(system_id, alg, key, csr=request)
    start = (now or datetime.now(UTC)) - BACKDATE
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + BACKDATE + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, _signature_hash(key))
    )
    return KeyMaterial(system_id, alg, key, certificate=cert)


def _key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=True,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def load_private_key(path: Path) -> SigningKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"no private key at {path}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{path} is not an unencrypted PEM private key ({exc}); regenerate it with "
            "`lienthong keys generate`"
        ) from None
    key_family(key)
    assert isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    )
    return key


def parse_certificates(data: bytes, origin: str) -> list[x509.Certificate]:
    """Every certificate in a PEM blob; ConfigError naming ``origin`` when there is none."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(
            f"{origin} holds no readable PEM certificate ({exc}); expected a file starting "
            "with '-----BEGIN CERTIFICATE-----'"
        ) from None
    return certs


def load_certificate(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"no certificate at {path}") from None
    certs = parse_certificates(data, str(path))
    if len(certs) != 1:
        raise ConfigError(f"{path} holds {len(certs)} certificates; expected exactly one")
    return certs[0]


def install_certificate(keys_dir: Path, pem: bytes) -> Path:
    """Put a CA-issued certificate beside the key it was requested for (its CN names the
    system); refuses a certificate whose public key is not that key's."""
    certs = parse_certificates(pem, "the certificate")
    if len(certs) != 1:
        raise ConfigError(f"expected exactly one certificate, got {len(certs)}")
    cert = certs[0]
    system_id = system_id_of(cert)
    files = KeyFiles.of(keys_dir, system_id)
    if not files.key.exists():
        raise ConfigError(
            f"no private key for {system_id} at {files.key}; a certificate is installed beside "
            "the key it was issued for (create one with `lienthong keys generate --csr`)"
        )
    key = load_private_key(files.key)
    if not same_public_key(public_key_of(cert), key.public_key()):
        raise ConfigError(
            f"the certificate for {system_id} was not issued for the key at {files.key}; "
            "install the certificate the CA issued from that key's CSR"
        )
    _write_public(files.certificate, cert.public_bytes(serialization.Encoding.PEM))
    files.csr.unlink(missing_ok=True)
    return files.certificate


def family_label(key: SigningKey | VerifyingKey) -> str:
    family = key_family(key)
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"{RSA}-{key.key_size}"
    return family


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the start (never world-readable, not even briefly), then renamed over.
    write_atomic(path, data, PRIVATE_FILE)


def _write_public(path: Path, data: bytes) -> None:
    # 0644 whatever the umask: readable, never writable by others.
    write_atomic(path, data, PUBLIC_FILE)
