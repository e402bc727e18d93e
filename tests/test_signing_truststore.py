"""The trust store: loading, algorithm pins, adding certificates, noticing new files."""

from __future__ import annotations

import logging
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from hub.errors import ConfigError
from hub.signing import keys, pins
from hub.signing.truststore import TrustStore

IGATE = "VN:GOV:000.00.00.H56:igate"
BHXH = "VN:GOV:000.00.00.G22:bhxh"
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _pem(system_id: str, alg: str = "ES256", **kw: object) -> tuple[bytes, str]:
    material = keys.generate(system_id, alg, **kw)  # type: ignore[arg-type]
    assert material.kid is not None
    return material.certificate_pem(), material.kid


def _age(path: Path, seconds: float = 10.0) -> None:
    """Make a directory look modified a while ago, as it does in production between changes
    (a change within the same timestamp tick is otherwise re-checked, see truststore)."""
    past = datetime.now(UTC).timestamp() - seconds
    os.utime(path, (past, past))


def test_missing_directory_is_an_empty_store(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "nope")
    assert store.entries() == [] and len(store) == 0
    assert store.get("x") is None


def test_loads_every_certificate_with_its_details(tmp_path: Path) -> None:
    a_pem, a_kid = _pem(IGATE, now=NOW)
    b_pem, b_kid = _pem(BHXH, "RS256")
    c_pem, c_kid = _pem(IGATE, "EdDSA", now=NOW + timedelta(days=1))  # a rotation: two keys
    (tmp_path / "igate.pem").write_bytes(a_pem + c_pem)  # a bundle of two
    (tmp_path / "bhxh.pem").write_bytes(b_pem)
    (tmp_path / "notes.txt").write_text("ignored")
    store = TrustStore(tmp_path)

    assert [(k.system_id, k.kid) for k in store.entries()] == [
        (BHXH, b_kid), (IGATE, a_kid), (IGATE, c_kid),
    ]
    key = store.get(a_kid)
    assert key is not None
    assert key.system_id == IGATE and key.alg == "ES256" and key.kid == a_kid
    assert key.not_before == NOW - keys.BACKDATE
    assert key.not_after == NOW + timedelta(days=365)
    assert key.valid_from == key.not_before.timestamp()
    assert isinstance(key.public_key, ec.EllipticCurvePublicKey)
    assert key.path == tmp_path / "igate.pem"
    assert keys.kid_of(key.cert) == a_kid
    assert store.get(b_kid).alg == "RS256"  # type: ignore[union-attr]
    assert store.get(c_kid).alg == "EdDSA"  # type: ignore[union-attr]


def test_pins_toml_pins_a_kid_or_a_system(tmp_path: Path) -> None:
    rsa_pem, rsa_kid = _pem(BHXH, "RS256")
    other_pem, other_kid = _pem(BHXH, "RS256")
    ed_pem, ed_kid = _pem(IGATE, "EdDSA")
    for name, pem in (("a.pem", rsa_pem), ("b.pem", other_pem), ("c.pem", ed_pem)):
        (tmp_path / name).write_bytes(pem)
    (tmp_path / "pins.toml").write_text(
        f'# the ministry signs with PSS\n"{BHXH}" = "PS256"\n"{other_kid}" = "RS256"\n'
        f'"{ed_kid}" = "Ed25519"\n'
    )
    store = TrustStore(tmp_path)
    assert store.get(rsa_kid).alg == "PS256"  # type: ignore[union-attr]
    assert store.get(other_kid).alg == "RS256"  # type: ignore[union-attr]  # kid beats system
    assert store.get(ed_kid).alg == "Ed25519"  # type: ignore[union-attr]


def test_pin_that_does_not_fit_the_key_is_a_config_error(tmp_path: Path) -> None:
    pem, _ = _pem(IGATE)
    (tmp_path / "igate.pem").write_bytes(pem)
    (tmp_path / "pins.toml").write_text(f'"{IGATE}" = "PS256"\n')
    with pytest.raises(ConfigError, match=r"igate.pem: algorithm PS256 does not fit an EC P-256"):
        TrustStore(tmp_path)
    (tmp_path / "pins.toml").write_text(f'"{IGATE}" = "HS256"\n')
    with pytest.raises(ConfigError, match=r"pin .* = 'HS256' is not an algorithm"):
        TrustStore(tmp_path)
    (tmp_path / "pins.toml").write_text("not = toml = at all")
    with pytest.raises(ConfigError, match=r"pins\.toml is not valid TOML"):
        TrustStore(tmp_path)


def test_broken_certificate_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nxx\n")
    with pytest.raises(ConfigError, match=r"broken.pem holds no readable PEM certificate"):
        TrustStore(tmp_path)


def test_add_copies_a_validated_certificate_in(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "trust")
    pem, kid = _pem(IGATE)
    key = store.add(pem)
    assert key.kid == kid and key.alg == "ES256"
    assert key.path is not None and key.path.parent == tmp_path / "trust"
    assert key.path.name.startswith("VN_GOV_000-00-00-H56_igate_")
    assert store.get(kid) == key
    # adding it again changes nothing; adding with a pin records the pin
    assert store.add(pem) == key
    assert len(list((tmp_path / "trust").glob("*.pem"))) == 1
    # a second store on the same directory sees it
    assert TrustStore(tmp_path / "trust").get(kid) is not None


def test_add_with_a_pin_writes_pins_toml(tmp_path: Path) -> None:
    store = TrustStore(tmp_path)
    pem, kid = _pem(BHXH, "RS256")
    assert store.add(pem, alg="PS256").alg == "PS256"
    assert pins.read_pins(tmp_path) == {kid: "PS256"}
    assert TrustStore(tmp_path).get(kid).alg == "PS256"  # type: ignore[union-attr]
    assert store.add(pem, alg="RS256").alg == "RS256"  # back to the default: pin dropped
    assert pins.read_pins(tmp_path) == {}


def test_add_refuses_bad_certificates(tmp_path: Path) -> None:
    store = TrustStore(tmp_path)
    with pytest.raises(ConfigError, match="no readable PEM certificate"):
        store.add(b"hello")
    a, _ = _pem(IGATE)
    b, _ = _pem(BHXH)
    with pytest.raises(ConfigError, match="holds 2 certificates"):
        store.add(a + b)
    expired, _ = _pem(IGATE, now=NOW - timedelta(days=400))
    with pytest.raises(ConfigError, match="expired on 2029-11-27 00:00 UTC; ask its owner"):
        store.add(expired, now=NOW)
    with pytest.raises(ConfigError, match="ES256 does not fit an RSA key"):
        store.add(_pem(BHXH, "RS256")[0], alg="ES256")

    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, IGATE)])
    p384 = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(ConfigError, match="P-256"):
        store.add(p384.public_bytes(serialization.Encoding.PEM))
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(small.public_key()).serial_number(1)
        .not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1))
        .sign(small, hashes.SHA256())
    )
    with pytest.raises(ConfigError, match="at least 2048"):
        store.add(weak.public_bytes(serialization.Encoding.PEM))
    assert list(tmp_path.glob("*.pem")) == []


def test_new_file_is_picked_up_without_explicit_reload(tmp_path: Path) -> None:
    store = TrustStore(tmp_path, check_interval=3600)  # only the unknown-kid check can see it
    _age(tmp_path)
    store.reload()
    pem, kid = _pem(IGATE)
    src = tmp_path.parent / "incoming.pem"
    src.write_bytes(pem)
    shutil.copy(src, tmp_path / "igate.pem")  # an operator copying a file in
    key = store.get(kid)
    assert key is not None and key.system_id == IGATE


def test_periodic_check_picks_up_pins_and_removals(tmp_path: Path) -> None:
    pem, kid = _pem(BHXH, "RS256")
    (tmp_path / "bhxh.pem").write_bytes(pem)
    store = TrustStore(tmp_path, check_interval=0)
    assert store.get(kid).alg == "RS256"  # type: ignore[union-attr]
    (tmp_path / "pins.toml").write_text(f'"{kid}" = "PS256"\n')
    assert store.get(kid).alg == "PS256"  # type: ignore[union-attr]
    (tmp_path / "bhxh.pem").unlink()
    assert store.get(kid) is None
    assert store.entries() == []


def test_unchanged_directory_is_not_reloaded(tmp_path: Path) -> None:
    pem, kid = _pem(IGATE)
    (tmp_path / "igate.pem").write_bytes(pem)
    _age(tmp_path)
    store = TrustStore(tmp_path, check_interval=0)
    first = store.get(kid)
    assert store.get("unknown") is None
    assert store.get(kid) is first  # same object: nothing was re-parsed


def test_broken_file_during_refresh_keeps_the_previous_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pem, kid = _pem(IGATE)
    (tmp_path / "igate.pem").write_bytes(pem)
    store = TrustStore(tmp_path, check_interval=0)
    (tmp_path / "junk.pem").write_text("junk")
    _age(tmp_path)  # not a file still being copied: a real mistake
    with caplog.at_level(logging.ERROR, logger="hub.signing.truststore"):
        assert store.get(kid) is not None
        assert store.get(kid) is not None
    errors = [r for r in caplog.records if "not reloaded" in r.getMessage()]
    assert len(errors) == 1 and "junk.pem" in errors[0].getMessage()
    with pytest.raises(ConfigError, match=r"junk\.pem"):
        store.reload()
    (tmp_path / "junk.pem").unlink()
    store.reload()
    assert store.get(kid) is not None
