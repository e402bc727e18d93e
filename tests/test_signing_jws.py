"""Signing: the token format (checked independently of joserfc, with plain cryptography), the
signer's refusals, and loading a signer from the keys directory."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from hub.envelope import Envelope
from hub.errors import ConfigError
from hub.signing import keys, pins
from hub.signing.algorithms import key_family
from hub.signing.jws import Signer, load_signer

SID = "VN:GOV:000.00.00.H56:igate"
T = 1_900_000_000

# hub.signing silences joserfc's per-use warning about the name "EdDSA"; pytest resets filters.
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _envelope(source: str = SID, data: Any = None) -> Envelope:
    return Envelope.new(
        source=source,
        type="vn.gov.dossier.submitted",
        subject="000.00.00.H56-250101-0001",
        data=data if data is not None else {"ten": "Nguyễn Văn A"},
    )


def _verify_raw(alg: str, public: Any, signing_input: bytes, sig: bytes) -> None:
    """RFC 7515 signature checks with plain cryptography; raises InvalidSignature."""
    if alg == "ES256":
        assert len(sig) == 64  # JOSE form r || s, not DER
        der = encode_dss_signature(int.from_bytes(sig[:32]), int.from_bytes(sig[32:]))
        public.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    elif alg == "RS256":
        public.verify(sig, signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "PS256":
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        public.verify(sig, signing_input, pss, hashes.SHA256())
    else:
        public.verify(sig, signing_input)


@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "EdDSA", "Ed25519"])
def test_token_is_a_detached_unencoded_jws_over_the_body(alg: str) -> None:
    material = keys.generate(SID, alg)
    assert material.certificate is not None
    signer = Signer(material.private_key, material.certificate, alg, clock=lambda: T + 0.9)
    env = _envelope()
    body = env.to_bytes()
    token = signer.sign(body, env)

    protected, payload, signature = token.split(".")
    assert payload == ""
    header = json.loads(_b64decode(protected))
    assert header == {
        "alg": alg,
        "kid": keys.kid_of(material.certificate),
        "b64": False,
        "crit": ["b64"],
        "iat": T,
        "lt-id": env.id,
        "lt-type": env.type,
        "lt-src": SID,
    }
    # RFC 7797: the signing input is the encoded header, a dot, and the raw body bytes.
    public = material.private_key.public_key()
    _verify_raw(alg, public, protected.encode() + b"." + body, _b64decode(signature))


def test_signer_exposes_its_identity() -> None:
    material = keys.generate(SID, "RS256")
    assert material.certificate is not None
    signer = Signer(material.private_key, material.certificate)
    assert signer.alg == "RS256"  # RSA defaults to RS256
    assert signer.kid == keys.kid_of(material.certificate)
    assert signer.system_id == SID
    assert SID in repr(signer)


@pytest.mark.parametrize(
    ("alg", "key_alg"), [("ES256", "ES256"), ("RS256", "RS256"), ("EdDSA", "EdDSA")]
)
def test_default_algorithm_follows_the_key_type(alg: str, key_alg: str) -> None:
    material = keys.generate(SID, alg)
    assert material.certificate is not None
    assert Signer(material.private_key, material.certificate).alg == key_alg


def test_url_safe_body_is_still_detached() -> None:
    # joserfc would embed a payload made only of URL-safe characters
    material = keys.generate(SID)
    assert material.certificate is not None
    signer = Signer(material.private_key, material.certificate)
    token = signer.sign(b"abc-DEF_123", _envelope())
    assert token.split(".")[1] == ""


def test_empty_and_large_bodies_are_signed() -> None:
    material = keys.generate(SID, "EdDSA")
    assert material.certificate is not None
    signer = Signer(material.private_key, material.certificate)
    public = material.private_key.public_key()
    for body in (b"", b"x" * 2_000_000):
        protected, _, signature = signer.sign(body, _envelope()).split(".")
        _verify_raw("EdDSA", public, protected.encode() + b"." + body, _b64decode(signature))


def test_signer_refuses_a_message_of_another_source() -> None:
    material = keys.generate(SID)
    assert material.certificate is not None
    signer = Signer(material.private_key, material.certificate)
    other = _envelope(source="VN:GOV:000.00.00.G22:dvcqg")
    with pytest.raises(ConfigError, match="cannot sign a message whose source is") as info:
        signer.sign(other.to_bytes(), other)
    assert info.value.field == "source"


def test_signer_refuses_a_certificate_of_another_key() -> None:
    a, b = keys.generate(SID), keys.generate(SID)
    assert b.certificate is not None
    with pytest.raises(ConfigError, match="does not belong to this private key"):
        Signer(a.private_key, b.certificate)


def test_signer_refuses_an_algorithm_the_key_cannot_use() -> None:
    material = keys.generate(SID)
    assert material.certificate is not None
    with pytest.raises(ConfigError, match="PS256 does not fit an EC P-256 key"):
        Signer(material.private_key, material.certificate, "PS256")
    with pytest.raises(ConfigError, match="not supported"):
        Signer(material.private_key, material.certificate, "HS256")


def test_unsupported_key_types_are_refused() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ConfigError, match="curve secp384r1"):
        key_family(p384)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ConfigError, match="1024 bits"):
        key_family(small)
    assert key_family(ed25519.Ed25519PrivateKey.generate()) == "Ed25519"


def test_load_signer_reads_the_keys_directory(tmp_path: Path) -> None:
    material = keys.generate(SID, "PS256")
    material.save(tmp_path)
    signer = load_signer(tmp_path, SID)
    assert signer.alg == "PS256"  # from the keys directory's pins.toml
    assert signer.kid == material.kid
    env = _envelope()
    body = env.to_bytes()
    protected, _, signature = signer.sign(body, env).split(".")
    _verify_raw(
        "PS256", material.private_key.public_key(), protected.encode() + b"." + body,
        _b64decode(signature),
    )


def test_load_signer_kid_pin_wins_over_system_pin(tmp_path: Path) -> None:
    material = keys.generate(SID, "RS256")
    material.save(tmp_path)
    pins.set_pin(tmp_path, SID, "PS256")
    assert material.kid is not None
    pins.set_pin(tmp_path, material.kid, "RS256")
    assert load_signer(tmp_path, SID).alg == "RS256"


def test_load_signer_explains_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lienthong keys generate --system"):
        load_signer(tmp_path, SID)
    keys.generate(SID, csr=True).save(tmp_path)
    with pytest.raises(ConfigError, match="lienthong keys install"):
        load_signer(tmp_path, SID)


def test_load_signer_refuses_an_expired_certificate(tmp_path: Path) -> None:
    issued = datetime(2020, 1, 1, tzinfo=UTC)
    keys.generate(SID, days=30, now=issued).save(tmp_path)
    with pytest.raises(ConfigError, match="expired on 2020-01-31; renew it"):
        load_signer(tmp_path, SID)
    assert load_signer(tmp_path, SID, now=issued + timedelta(days=1)).system_id == SID


def test_load_signer_refuses_a_certificate_filed_under_another_system(tmp_path: Path) -> None:
    keys.generate(SID).save(tmp_path)
    other = keys.generate("VN:GOV:000.00.00.G22:dvcqg")
    files = keys.KeyFiles.of(tmp_path, SID)
    files.certificate.write_bytes(other.certificate_pem())
    with pytest.raises(ConfigError, match=re.escape("not VN:GOV:000.00.00.H56:igate")):
        load_signer(tmp_path, SID)
