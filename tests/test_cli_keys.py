"""``lienthong keys``: generate, trust, install, list, through the real command line app."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner, Result

from hub.cli import app
from hub.signing import keys, load_signer, pins
from hub.signing.truststore import TrustStore

IGATE = "VN:GOV:000.00.00.H56:igate"
BHXH = "VN:GOV:000.00.00.G22:bhxh"

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["keys", *args], env=env)


def test_help_describes_every_command() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("generate", "trust", "install", "list"):
        assert command in result.output
    generate_help = run("generate", "--help").output
    assert "--system" in generate_help and "--csr" in generate_help
    assert "--no-trust" in generate_help and "--data-dir" in generate_help


def test_generate_writes_key_certificate_and_trusts_it(tmp_path: Path) -> None:
    result = run("generate", "--system", IGATE, "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    files = keys.KeyFiles.of(tmp_path / "keys", IGATE)
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    cert = keys.load_certificate(files.certificate)
    kid = keys.kid_of(cert)
    assert kid in result.output and "ES256" in result.output
    trusted = TrustStore(tmp_path / "trust").get(kid)
    assert trusted is not None and trusted.system_id == IGATE
    assert load_signer(tmp_path / "keys", IGATE).kid == kid


def test_generate_honours_the_data_dir_variable(tmp_path: Path) -> None:
    result = run("generate", "-s", IGATE, "--no-trust", env={"LIENTHONG_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert keys.KeyFiles.of(tmp_path / "keys", IGATE).certificate.exists()
    assert not (tmp_path / "trust").exists()


def test_generate_rsa_pss_pins_both_sides(tmp_path: Path) -> None:
    result = run("generate", "-s", BHXH, "--alg", "PS256", "--days", "90",
                 "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "RSA-2048" in result.output
    signer = load_signer(tmp_path / "keys", BHXH)
    assert signer.alg == "PS256"
    trusted = TrustStore(tmp_path / "trust").get(signer.kid)
    assert trusted is not None and trusted.alg == "PS256"
    assert (trusted.not_after - trusted.not_before) == timedelta(days=90) + keys.BACKDATE


def test_generate_refuses_bad_system_ids_clearly(tmp_path: Path) -> None:
    for bad in ("igate", "VN:GOV:h56:igate", "VN:GOV:000.00.00.H56:"):
        result = run("generate", "--system", bad, "--data-dir", str(tmp_path))
        assert result.exit_code == 2
        assert "error: --system:" in result.output
        assert "VN:GOV:000.00.00.H56:igate" in result.output  # shows what a good one looks like
        assert "Traceback" not in result.output
    assert not (tmp_path / "keys").exists()


def test_generate_refuses_unknown_algorithm(tmp_path: Path) -> None:
    result = run("generate", "-s", IGATE, "--alg", "HS256", "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "HS256" in result.output


def test_generate_does_not_replace_a_key_without_force(tmp_path: Path) -> None:
    assert run("generate", "-s", IGATE, "--data-dir", str(tmp_path)).exit_code == 0
    first = keys.load_certificate(keys.KeyFiles.of(tmp_path / "keys", IGATE).certificate)
    result = run("generate", "-s", IGATE, "--data-dir", str(tmp_path))
    assert result.exit_code == 2 and "--force" in result.output
    assert run("generate", "-s", IGATE, "--force", "--data-dir", str(tmp_path)).exit_code == 0
    second = keys.load_certificate(keys.KeyFiles.of(tmp_path / "keys", IGATE).certificate)
    assert first != second
    # both stay trusted during the rotation
    kids = {k.kid for k in TrustStore(tmp_path / "trust").entries()}
    assert kids == {keys.kid_of(first), keys.kid_of(second)}


def test_csr_then_install_the_ca_certificate(tmp_path: Path) -> None:
    result = run("generate", "-s", BHXH, "--alg", "PS256", "--csr", "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    files = keys.KeyFiles.of(tmp_path / "keys", BHXH)
    assert files.csr.exists() and not files.certificate.exists()
    assert "lienthong keys install" in result.output
    assert not (tmp_path / "trust").exists()  # nothing to trust yet

    csr = x509.load_pem_x509_csr(files.csr.read_bytes())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    issued = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Government CA")]))
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(ca_key, hashes.SHA256())
    )
    issued_file = tmp_path / "issued.pem"
    issued_file.write_bytes(issued.public_bytes(serialization.Encoding.PEM))

    result = run("install", str(issued_file), "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    signer = load_signer(tmp_path / "keys", BHXH)
    assert signer.alg == "PS256" and signer.kid == keys.kid_of(issued)
    trusted = TrustStore(tmp_path / "trust").get(signer.kid)
    assert trusted is not None and trusted.alg == "PS256"


def test_trust_adds_a_peer_certificate(tmp_path: Path) -> None:
    peer = keys.generate(BHXH, "RS256")
    pem_file = tmp_path / "bhxh.pem"
    pem_file.write_bytes(peer.certificate_pem())
    result = run("trust", str(pem_file), "--alg", "PS256", "--data-dir", str(tmp_path / "hub"))
    assert result.exit_code == 0, result.output
    assert f"trusted {BHXH}" in result.output and "PS256" in result.output
    assert peer.kid is not None
    assert pins.read_pins(tmp_path / "hub" / "trust") == {peer.kid: "PS256"}
    trusted = TrustStore(tmp_path / "hub" / "trust").get(peer.kid)
    assert trusted is not None and trusted.alg == "PS256"


def test_trust_refuses_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("hello")
    result = run("trust", str(bad), "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "error:" in result.output and "BEGIN CERTIFICATE" in result.output
    missing = run("trust", str(tmp_path / "missing.pem"), "--data-dir", str(tmp_path))
    assert missing.exit_code == 2


def test_list_shows_systems_and_flags_expiry(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "trust")
    now = datetime.now(UTC)
    fresh = keys.generate(IGATE, "EdDSA")
    soon = keys.generate(BHXH, days=10)
    old = keys.generate("VN:GOV:000.00.00.G22:old", days=30, now=now - timedelta(days=40))
    store.add(fresh.certificate_pem())
    store.add(soon.certificate_pem())
    (tmp_path / "trust" / "old.pem").write_bytes(old.certificate_pem())  # add() refuses expired

    result = run("list", "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["SYSTEM", "KID", "ALG", "VALID", "FROM", "VALID", "UNTIL"]
    by_system = {line.split()[0]: line for line in lines[1:]}
    assert fresh.kid is not None and fresh.kid in by_system[IGATE] and "EdDSA" in by_system[IGATE]
    assert not by_system[IGATE].rstrip().endswith(("EXPIRED", "days"))
    assert by_system[BHXH].rstrip().endswith(("expires in 9 days", "expires in 10 days"))
    assert by_system["VN:GOV:000.00.00.G22:old"].rstrip().endswith("EXPIRED")


def test_list_of_an_empty_store_says_how_to_fill_it(tmp_path: Path) -> None:
    result = run("list", "--data-dir", str(tmp_path))
    assert result.exit_code == 0
    assert "empty" in result.output and "lienthong keys trust" in result.output
