"""Key pairs, certificates, CSRs and their files."""

from __future__ import annotations

import base64
import hashlib
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from hub.errors import ConfigError, HubError, InvalidMessage
from hub.signing import keys, pins
from hub.signing.algorithms import ALGORITHMS

SID = "VN:GOV:000.00.00.H56:igate"
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def test_file_stem_is_safe_and_readable() -> None:
    assert keys.file_stem(SID) == "VN_GOV_000-00-00-H56_igate"
    assert keys.system_id_from_stem("VN_GOV_000-00-00-H56_igate") == SID


@given(
    agency=st.sampled_from(["000.00.00.H56", "000.00.00.G22", "000.20.31.H56", "H55.242", "G01"]),
    system=st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True),
)
def test_file_stem_round_trips(agency: str, system: str) -> None:
    system_id = f"VN:GOV:{agency}:{system}"
    stem = keys.file_stem(system_id)
    assert ":" not in stem and "/" not in stem
    assert "." not in stem.split("_", 3)[2]  # the agency part has no dots
    assert keys.system_id_from_stem(stem) == system_id


@pytest.mark.parametrize("bad", ["igate", "VN:GOV:h56:igate", "VN:GOV:000.00.00.H56:Igate", ""])
def test_bad_system_id_is_refused(bad: str) -> None:
    with pytest.raises(HubError, match=r"system identifier|agency code") as info:
        keys.generate(bad)
    assert info.value.field == "system_id"


def test_stem_that_is_not_a_key_name_is_refused() -> None:
    with pytest.raises(ValueError, match="not a key file stem"):
        keys.system_id_from_stem("igate")


@pytest.mark.parametrize(
    ("alg", "key_type"),
    [
        ("ES256", ec.EllipticCurvePrivateKey),
        ("RS256", rsa.RSAPrivateKey),
        ("PS256", rsa.RSAPrivateKey),
        ("EdDSA", ed25519.Ed25519PrivateKey),
        ("Ed25519", ed25519.Ed25519PrivateKey),
    ],
)
def test_generate_makes_a_self_signed_certificate(alg: str, key_type: type) -> None:
    material = keys.generate(SID, alg, days=30, now=NOW)
    assert isinstance(material.private_key, key_type)
    cert = material.certificate
    assert cert is not None and material.csr is None
    assert keys.system_id_of(cert) == SID
    assert cert.issuer == cert.subject
    assert cert.not_valid_before_utc == NOW - keys.BACKDATE
    assert cert.not_valid_after_utc == NOW + timedelta(days=30)
    assert keys.same_public_key(keys.public_key_of(cert), material.private_key.public_key())
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    # the self-signature verifies under its own key
    cert.verify_directly_issued_by(cert)


def test_rsa_keys_are_2048_bits() -> None:
    material = keys.generate(SID, "RS256")
    assert isinstance(material.private_key, rsa.RSAPrivateKey)
    assert material.private_key.key_size == 2048


def test_kid_is_unpadded_base64url_sha256_of_the_der() -> None:
    cert = keys.generate(SID).certificate
    assert cert is not None
    der = cert.public_bytes(serialization.Encoding.DER)
    kid = keys.kid_of(cert)
    assert len(kid) == 43 and "=" not in kid
    assert base64.urlsafe_b64decode(kid + "=") == hashlib.sha256(der).digest()


def test_generate_refuses_unknown_algorithm_and_bad_days() -> None:
    with pytest.raises(ConfigError, match="not supported"):
        keys.generate(SID, "HS256")
    with pytest.raises(ConfigError, match="days must be at least 1"):
        keys.generate(SID, days=0)


def test_csr_names_the_system_and_is_signed_by_the_key() -> None:
    material = keys.generate(SID, "PS256", csr=True)
    assert material.certificate is None and material.kid is None
    csr = material.csr
    assert csr is not None and csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SID
    with pytest.raises(ValueError, match="CSR, not a certificate"):
        material.certificate_pem()


def test_save_writes_private_key_0600_in_a_0700_directory(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    material = keys.generate(SID)
    files = material.save(keys_dir)
    assert files.key.name == "VN_GOV_000-00-00-H56_igate.key.pem"
    assert files.certificate.name == "VN_GOV_000-00-00-H56_igate.crt.pem"
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    loaded = keys.load_private_key(files.key)
    assert keys.same_public_key(loaded.public_key(), material.private_key.public_key())
    assert keys.load_certificate(files.certificate) == material.certificate
    assert not files.csr.exists()
    assert pins.read_pins(keys_dir) == {}


def test_save_refuses_to_overwrite_a_key_unless_asked(tmp_path: Path) -> None:
    first = keys.generate(SID)
    first.save(tmp_path)
    with pytest.raises(ConfigError, match="already exists"):
        keys.generate(SID).save(tmp_path)
    assert keys.load_certificate(keys.KeyFiles.of(tmp_path, SID).certificate) == first.certificate
    second = keys.generate(SID)
    second.save(tmp_path, overwrite=True)
    files = keys.KeyFiles.of(tmp_path, SID)
    assert keys.load_certificate(files.certificate) == second.certificate
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600


def test_non_default_algorithm_is_pinned_and_unpinned_on_rotation(tmp_path: Path) -> None:
    keys.generate(SID, "PS256").save(tmp_path)
    assert pins.read_pins(tmp_path) == {SID: "PS256"}
    keys.generate(SID, "ES256").save(tmp_path, overwrite=True)
    assert pins.read_pins(tmp_path) == {}


def test_saving_a_csr_drops_the_old_certificate(tmp_path: Path) -> None:
    keys.generate(SID).save(tmp_path)
    files = keys.generate(SID, csr=True).save(tmp_path, overwrite=True)
    assert files.csr.exists() and not files.certificate.exists()


def _ca_issue(csr: x509.CertificateSigningRequest, *, public_key: object = None) -> bytes:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Government CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_name)
        .public_key(public_key or csr.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_install_puts_the_ca_certificate_beside_its_key(tmp_path: Path) -> None:
    material = keys.generate(SID, csr=True)
    material.save(tmp_path)
    assert material.csr is not None
    path = keys.install_certificate(tmp_path, _ca_issue(material.csr))
    files = keys.KeyFiles.of(tmp_path, SID)
    assert path == files.certificate and not files.csr.exists()
    assert keys.system_id_of(keys.load_certificate(path)) == SID


def test_install_refuses_a_certificate_for_another_key(tmp_path: Path) -> None:
    material = keys.generate(SID, csr=True)
    material.save(tmp_path)
    assert material.csr is not None
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(ConfigError, match="not issued for the key"):
        keys.install_certificate(tmp_path, _ca_issue(material.csr, public_key=other))
    assert not keys.KeyFiles.of(tmp_path, SID).certificate.exists()


def test_install_without_a_key_says_how_to_make_one(tmp_path: Path) -> None:
    csr = keys.generate(SID, csr=True).csr
    assert csr is not None
    with pytest.raises(ConfigError, match="keys generate --csr"):
        keys.install_certificate(tmp_path, _ca_issue(csr))


def test_unreadable_files_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a pem")
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        keys.load_private_key(bad)
    with pytest.raises(ConfigError, match="no readable PEM certificate"):
        keys.load_certificate(bad)
    with pytest.raises(ConfigError, match="no private key at"):
        keys.load_private_key(tmp_path / "missing.pem")


def test_certificate_cn_must_be_a_system_id() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "igate.example.vn")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(ConfigError, match=re.escape("CN 'igate.example.vn' is not a system id")):
        keys.system_id_of(cert)


def test_every_algorithm_is_generated() -> None:
    # ALGORITHMS is what the CLI offers; each must be able to make a key
    for alg in ALGORITHMS:
        assert keys.generate(SID, alg).alg == alg
    with pytest.raises(InvalidMessage):
        keys.file_stem("VN:GOV:000.00.00.H56:")
