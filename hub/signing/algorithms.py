"""The JOSE algorithms the hub signs with, the key type each one needs, and the joserfc objects
(registries, keys) that signing and verification reuse for every message.

- ``ES256``: EC P-256, the default.
- ``RS256`` and ``PS256``: RSA keys (at least 2048 bits) of the government PKI. A certificate does
  not say which padding its holder signs with, so RSA defaults to RS256 and PS256 is pinned.
- ``EdDSA``: Ed25519 keys, under the RFC 8037 name that today's JOSE peers understand.
  ``Ed25519`` is the fully specified name of RFC 9864 for the same signatures; joserfc 1.8 knows
  both, and a key may be pinned to it once the peers have moved.
"""

from __future__ import annotations

import warnings
from functools import cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from joserfc import jws
from joserfc.errors import (
    InvalidHeaderValueError,
    MissingHeaderError,
    SecurityWarning,
    UnsupportedHeaderError,
)
from joserfc.jwk import ECKey, Key, KeyParameters, OKPKey, RSAKey
from joserfc.registry import Header, HeaderParameter, check_crit_header

from hub.errors import ConfigError

ES256 = "ES256"
RS256 = "RS256"
PS256 = "PS256"
EDDSA = "EdDSA"
ED25519 = "Ed25519"
ALGORITHMS: tuple[str, ...] = (ES256, RS256, PS256, EDDSA, ED25519)

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
VerifyingKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

EC_P256 = "EC P-256"
RSA = "RSA"
OKP_ED25519 = "Ed25519"
# Key family -> algorithms it may sign with; the first is the default.
FAMILY_ALGORITHMS: dict[str, tuple[str, ...]] = {
    EC_P256: (ES256,),
    RSA: (RS256, PS256),
    OKP_ED25519: (EDDSA, ED25519),
}
MIN_RSA_BITS = 2048

# joserfc warns on every use of "EdDSA" since RFC 9864 deprecated the name in favour of
# "Ed25519". The hub uses it on purpose (see above), and a warning per message would flood logs.
warnings.filterwarnings("ignore", message=r"EdDSA is deprecated", category=SecurityWarning)

# The hub's own protected header parameters; the registry rejects any header it does not list.
_HEADERS = {
    "iat": HeaderParameter("Issued at, unix seconds", "int", required=True),
    "lt-id": HeaderParameter("Envelope id", "str", required=True),
    "lt-type": HeaderParameter("Envelope type", "str", required=True),
    "lt-src": HeaderParameter("Envelope source", "str", required=True),
}
# joserfc caps payloads at 128 kB by default; bodies are bounded by the entry points, not here.
_MAX_PAYLOAD = 64 * 1024 * 1024
_MAX_HEADER = 2048


def key_family(key: object) -> str:
    """``EC P-256``, ``RSA`` or ``Ed25519`` for a public or private key; anything else is
    refused with a message saying what the hub accepts."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ConfigError(
                f"the key is on curve {key.curve.name}; the hub signs EC keys with ES256 only, "
                "so use a P-256 (secp256r1) key"
            )
        return EC_P256
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(
                f"the RSA key has {key.key_size} bits; use at least {MIN_RSA_BITS}"
            )
        return RSA
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return OKP_ED25519
    raise ConfigError(
        f"keys of type {type(key).__name__} are not supported; use EC P-256 (ES256), "
        "RSA (RS256/PS256) or Ed25519 (EdDSA)"
    )


def default_alg(key: object) -> str:
    return FAMILY_ALGORITHMS[key_family(key)][0]


def check_alg(alg: str, key: object) -> str:
    """``alg`` if a key of this type can sign with it; ConfigError naming the choices if not."""
    family = key_family(key)
    allowed = FAMILY_ALGORITHMS[family]
    if alg not in allowed:
        if alg not in ALGORITHMS:
            raise ConfigError(
                f"algorithm {alg!r} is not supported; choose one of {', '.join(ALGORITHMS)}"
            )
        raise ConfigError(
            f"algorithm {alg} does not fit an {family} key; such a key signs with "
            f"{' or '.join(allowed)}"
        )
    return alg


def jose_key(key: SigningKey | VerifyingKey, *, kid: str, alg: str) -> Key:
    """The joserfc key, bound to one algorithm: joserfc then refuses to use it with another."""
    params: KeyParameters = {"kid": kid, "alg": alg, "use": "sig"}
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return ECKey.import_key(key, params)
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return RSAKey.import_key(key, params)
    return OKPKey.import_key(key, params)


class _Registry(jws.JWSRegistry):
    """joserfc's registry with the same header checks, made in one pass over the header.

    joserfc checks a header by walking its whole parameter registry (two dozen entries) and
    then the header again for unknown names; it does so when signing and when verifying, i.e.
    twice per relayed message. Here: the required names, then each name the header has
    (validated, or refused if the registry lacks it), in the order joserfc reports them."""

    def __init__(self, header_registry: dict[str, HeaderParameter], algorithms: list[str] | None):
        super().__init__(header_registry=header_registry, algorithms=algorithms)
        self._required = tuple(k for k, p in self.header_registry.items() if p.required)

    def check_header(self, header: Header) -> None:
        registry = self.header_registry
        check_crit_header(registry, header)
        for name in self._required:
            if name not in header:
                raise MissingHeaderError(name)
        unknown: set[str] = set()
        for name, value in header.items():
            param = registry.get(name)
            if param is None:
                unknown.add(name)
                continue
            try:
                param.validate(value)
            except ValueError as error:
                raise InvalidHeaderValueError(f"'{name}' in header {error}") from error
        if unknown and self.strict_check_header:
            raise UnsupportedHeaderError(f"Unsupported {unknown} in header")


def _new_registry(algorithms: list[str] | None) -> jws.JWSRegistry:
    reg = _Registry(_HEADERS, algorithms)
    reg.max_payload_length = _MAX_PAYLOAD
    reg.max_header_length = _MAX_HEADER
    return reg


@cache
def registry(alg: str) -> jws.JWSRegistry:
    """A joserfc registry that allows exactly ``alg`` and the hub's header parameters. One per
    algorithm, shared by every signer and verifier."""
    if alg not in ALGORITHMS:
        raise ConfigError(
            f"algorithm {alg!r} is not supported; choose one of {', '.join(ALGORITHMS)}"
        )
    return _new_registry([alg])


# For reading a token before its key is known: extraction only applies the size limits.
PARSE_REGISTRY = _new_registry(None)


# ES256 straight on cryptography, the default algorithm's hot path (every message the hub signs,
# every request it verifies): joserfc's generic path (key wrappers, per-call key checks, hex
# round trips of r and s) cost about as much again as the ECDSA operation itself (see
# docs/performance.md#es256-without-joserfc). The bytes are joserfc's: r || s, 32 bytes each.
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_P256_BYTES = 32


def es256_sign(key: ec.EllipticCurvePrivateKey, signing_input: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(signing_input, _ECDSA_SHA256))
    return r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big")


def es256_verify(key: ec.EllipticCurvePublicKey, signing_input: bytes, signature: bytes) -> bool:
    if len(signature) != 2 * _P256_BYTES:
        return False
    der = encode_dss_signature(int.from_bytes(signature[:_P256_BYTES], "big"),
                               int.from_bytes(signature[_P256_BYTES:], "big"))
    try:
        key.verify(der, signing_input, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True
