"""Verification: every way a signature can be wrong has its own code, and a good one passes.
Time is a fixed clock, never the wall clock."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from joserfc import jws
from joserfc.jwk import ECKey

from hub.envelope import Envelope
from hub.errors import ConfigError, InvalidMessage
from hub.settings import Settings
from hub.signing import keys
from hub.signing.algorithms import registry
from hub.signing.jws import Signer
from hub.signing.replay import DuplicateMessage, ReplayCache
from hub.signing.truststore import TrustStore
from hub.signing.verifier import Verifier

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

T = 1_900_000_000.0
ISSUED = datetime.fromtimestamp(T, UTC) - timedelta(days=1)
MAX_AGE, SKEW, GRACE = 300.0, 60.0, 600.0


@dataclass
class Party:
    system_id: str
    material: keys.KeyMaterial
    alg: str

    @property
    def kid(self) -> str:
        assert self.material.kid is not None
        return self.material.kid

    def signer(self, at: float = T) -> Signer:
        assert self.material.certificate is not None
        return Signer(
            self.material.private_key, self.material.certificate, self.alg, clock=lambda: at
        )


@dataclass
class World:
    trust: TrustStore
    parties: dict[str, Party]


def _party(name: str, alg: str, *, issued: datetime = ISSUED, days: int = 365) -> Party:
    system_id = f"VN:GOV:000.00.00.H56:{name}"
    return Party(system_id, keys.generate(system_id, alg, days, now=issued), alg)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    directory = tmp_path_factory.mktemp("trust")
    parties = {
        "es": _party("es", "ES256"),
        "rs": _party("rs", "RS256"),
        "ps": _party("ps", "PS256"),
        "ed": _party("ed", "EdDSA"),
        "ed2": _party("ed2", "Ed25519"),
        "expired": _party("expired", "ES256", issued=ISSUED - timedelta(days=60), days=30),
        "future": _party("future", "ES256", issued=ISSUED + timedelta(days=10)),
    }
    trust = TrustStore(directory)
    for party in parties.values():
        trust.add(party.material.certificate_pem(), alg=party.alg, now=ISSUED - timedelta(days=60))
    return World(trust, parties)


def _verifier(world: World, *, now: float = T, replay: ReplayCache | None = None) -> Verifier:
    return Verifier(
        world.trust, max_age=MAX_AGE, clock_skew=SKEW, retry_grace=GRACE, replay=replay,
        clock=lambda: now,
    )


def _envelope(source: str, *, id: str | None = None, data: Any = None) -> Envelope:
    return Envelope.new(
        source=source,
        type="vn.gov.dossier.submitted",
        subject="000.00.00.H56-250101-0001",
        data=data if data is not None else {"ten": "Trần Thị B", "so": 1},
        id=id,
    )


def _message(party: Party, *, at: float = T, **kw: Any) -> tuple[bytes, str, Envelope]:
    env = _envelope(party.system_id, **kw)
    body = env.to_bytes()
    return body, party.signer(at).sign(body, env), env


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, Any], body: bytes, sign: Callable[[bytes], bytes]) -> str:
    """A token built by hand, as an attacker would, signed over whatever header they like."""
    protected = _b64(json.dumps(header).encode())
    return f"{protected}..{_b64(sign(protected.encode() + b'.' + body))}"


def _header(party: Party, env: Envelope, **changes: Any) -> dict[str, Any]:
    header = {
        "alg": party.alg, "kid": party.kid, "b64": False, "crit": ["b64"], "iat": int(T),
        "lt-id": env.id, "lt-type": env.type, "lt-src": env.source,
    }
    header.update(changes)
    return {k: v for k, v in header.items() if v is not None}


def _ec(key: object) -> ec.EllipticCurvePrivateKey:
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _ec_key(party: Party) -> ECKey:
    return ECKey.import_key(_ec(party.material.private_key))


def _code(call: Callable[[], object]) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as info:
        call()
    return info.value


# --- good messages ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["es", "rs", "ps", "ed", "ed2"])
def test_round_trip_for_every_algorithm(world: World, name: str) -> None:
    party = world.parties[name]
    body, token, env = _message(party)
    key = _verifier(world).verify(body, token, env)
    assert key.system_id == party.system_id and key.kid == party.kid and key.alg == party.alg


def test_token_may_come_as_bytes(world: World) -> None:
    body, token, env = _message(world.parties["es"])
    assert _verifier(world).verify(body, token.encode(), env).kid == world.parties["es"].kid


def test_a_signature_is_checked_once_per_verifier_and_every_other_check_each_time(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumers of one worker process share a verifier and receive the same signed bytes:
    the cryptography runs once for them; age, header and signer checks run every time, and
    other bytes under the same token are checked (and refused) again."""
    party = world.parties["es"]
    body, token, env = _message(party)
    checked: list[str] = []
    original = Verifier._check_signature

    def counting(self: Verifier, obj: Any, key: Any, header_name: str) -> None:
        checked.append(key.kid)
        original(self, obj, key, header_name)

    monkeypatch.setattr(Verifier, "_check_signature", counting)
    verifier = _verifier(world)
    assert verifier.verify(body, token, env).kid == party.kid
    assert verifier.verify(body, token, env).kid == party.kid
    assert checked == [party.kid]
    tampered = body.replace("Trần Thị B".encode(), "Trần Thị C".encode())
    err = _code(lambda: verifier.verify(tampered, token, Envelope.from_bytes(tampered)))
    assert err.code == "client.bad_signature" and len(checked) == 2
    # Later, past its age: refused although its signature was verified before.
    late = Verifier(world.trust, max_age=MAX_AGE, clock_skew=SKEW, retry_grace=GRACE,
                    clock=lambda: T + MAX_AGE + 1)
    late._verified = verifier._verified
    assert _code(lambda: late.verify(body, token, env)).code == "client.stale_message"
    other = _envelope(party.system_id)
    assert _code(lambda: verifier.verify(body, token, other)).code == "client.header_mismatch"


# --- missing and garbled tokens ----------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", b""])
def test_missing_signature(world: World, token: str | bytes | None) -> None:
    body, _, env = _message(world.parties["es"])
    err = _code(lambda: _verifier(world).verify(body, token, env))
    assert err.code == "client.missing_signature"
    assert "lt-signature" in err.message and err.field == "lt-signature"


@pytest.mark.parametrize("token", [None, "garbage", "a..b"])
def test_refusals_name_the_header_the_token_came_in(world: World, token: str | None) -> None:
    """The verifier serves the broker (AMQP header lt-signature) and the REST entry point
    (X-Signature): a refusal names the header the sender actually used."""
    body, _, env = _message(world.parties["es"])
    err = _code(lambda: _verifier(world).verify(body, token, env, header_name="X-Signature"))
    assert err.code in ("client.missing_signature", "client.bad_signature")
    assert err.field == "X-Signature" and "lt-signature" not in err.message


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c.d",
        "!!!..!!!",
        _b64(b"not json") + ".." + _b64(b"sig"),
        _b64(b"[1, 2]") + ".." + _b64(b"sig"),
        _b64(b'{"kid": "x"}') + ".." + _b64(b"sig"),  # no alg
    ],
)
def test_garbled_token(world: World, token: str) -> None:
    body, _, env = _message(world.parties["es"])
    assert _code(lambda: _verifier(world).verify(body, token, env)).code == "client.bad_signature"


def test_embedded_payload_is_refused(world: World) -> None:
    """A non-detached token would be checked against its own payload, not the body."""
    party = world.parties["es"]
    body, _, env = _message(party)
    other = b'{"forged": true}'
    key = _ec_key(party)
    header = {k: v for k, v in _header(party, env).items() if k not in ("b64", "crit")}
    embedded = jws.serialize_compact(header, other, key, registry=registry("ES256"))
    assert embedded.split(".")[1]  # joserfc's ordinary, attached form
    err = _code(lambda: _verifier(world).verify(body, embedded, env))
    assert err.code == "client.bad_signature" and "embeds a payload" in err.message


def test_encoded_payload_signature_is_refused(world: World) -> None:
    """b64: true (the RFC 7515 default) signs base64url(body), not the body bytes."""
    party = world.parties["ed"]
    body, _, env = _message(party)
    header = {k: v for k, v in _header(party, env).items() if k not in ("b64", "crit")}
    key = party.material.private_key
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    protected = _b64(json.dumps(header).encode())
    token = f"{protected}..{_b64(key.sign(protected.encode() + b'.' + _b64(body).encode()))}"
    err = _code(lambda: _verifier(world).verify(body, token, env))
    assert err.code == "client.bad_signature" and "b64: false" in err.message


def test_unknown_header_parameter_is_refused(world: World) -> None:
    party = world.parties["ed"]
    body, _, env = _message(party)
    key = party.material.private_key
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    token = _forge(_header(party, env, **{"x-extra": "1"}), body, key.sign)
    assert _code(lambda: _verifier(world).verify(body, token, env)).code == "client.bad_signature"


# --- forged signatures -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["es", "rs", "ps", "ed", "ed2"])
def test_body_changed_after_signing(world: World, name: str) -> None:
    party = world.parties[name]
    body, token, _ = _message(party)
    tampered = body.replace("Trần Thị B".encode(), "Trần Thị C".encode())
    assert tampered != body
    tampered_env = Envelope.from_bytes(tampered)
    err = _code(lambda: _verifier(world).verify(tampered, token, tampered_env))
    assert err.code == "client.bad_signature"
    assert "changed after signing" in err.message


def test_signature_from_another_key_with_the_same_kid(world: World) -> None:
    party = world.parties["es"]
    body, _, env = _message(party)
    impostor = keys.generate(party.system_id, "ES256").private_key
    token = jws.detach_content(
        jws.serialize_compact(
            _header(party, env), body, ECKey.import_key(_ec(impostor)), registry=registry("ES256")
        )
    )
    assert _code(lambda: _verifier(world).verify(body, token, env)).code == "client.bad_signature"


def test_signature_bytes_flipped(world: World) -> None:
    body, token, env = _message(world.parties["rs"])
    protected, _, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[10] ^= 1
    token = f"{protected}..{_b64(bytes(raw))}"
    assert _code(lambda: _verifier(world).verify(body, token, env)).code == "client.bad_signature"


def test_es256_tokens_of_joserfc_and_of_the_hub_are_interchangeable(world: World) -> None:
    """ES256 is signed and verified without joserfc (hub.signing.algorithms): a token joserfc
    makes passes the hub's verifier, the hub's passes joserfc's own check, and both carry the
    same protected header segment."""
    party = world.parties["es"]
    body, token, env = _message(party)
    made_by_joserfc = jws.detach_content(jws.serialize_compact(
        _header(party, env), body, _ec_key(party), registry=registry("ES256")))
    assert token.split(".")[0] == made_by_joserfc.split(".")[0]
    assert _verifier(world).verify(body, made_by_joserfc, env).kid == party.kid
    public = ECKey.import_key(_ec(party.material.private_key).public_key())
    obj = jws.extract_compact(token.encode(), body)
    assert jws.validate_compact(obj, public, registry=registry("ES256"))


@pytest.mark.parametrize("length", [0, 63, 65, 96])
def test_es256_signature_of_the_wrong_length(world: World, length: int) -> None:
    body, token, env = _message(world.parties["es"])
    protected, _, sig = token.split(".")
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    token = f"{protected}..{_b64((raw * 2)[:length])}"
    assert _code(lambda: _verifier(world).verify(body, token, env)).code == "client.bad_signature"


def test_es256_signature_bytes_flipped(world: World) -> None:
    body, token, env = _message(world.parties["es"])
    protected, _, sig = token.split(".")
    for index in (0, 40):  # in r, in s
        raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
        raw[index] ^= 1
        flipped = f"{protected}..{_b64(bytes(raw))}"
        err = _code(lambda t=flipped: _verifier(world).verify(body, t, env))
        assert err.code == "client.bad_signature"


# --- keys and algorithms -----------------------------------------------------------------------


def test_unknown_kid(world: World) -> None:
    stranger = _party("es", "ES256")  # same system id, certificate never trusted
    body, token, env = _message(stranger)
    err = _code(lambda: _verifier(world).verify(body, token, env))
    assert err.code == "client.unknown_key" and err.field == "kid"
    assert "lienthong keys trust" in err.message


def test_missing_kid(world: World) -> None:
    party = world.parties["ed"]
    body, _, env = _message(party)
    key = party.material.private_key
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    token = _forge(_header(party, env, kid=None), body, key.sign)
    assert _code(lambda: _verifier(world).verify(body, token, env)).code == "client.unknown_key"


@pytest.mark.parametrize("alg", ["RS256", "PS256", "EdDSA", "ES384", "none", "HS256"])
def test_header_alg_other_than_the_pinned_one(world: World, alg: str) -> None:
    party = world.parties["es"]
    body, _, env = _message(party)
    token = _forge(_header(party, env, alg=alg), body, lambda _: b"\x00" * 64)
    err = _code(lambda: _verifier(world).verify(body, token, env))
    assert err.code == "client.algorithm_mismatch" and "pinned to ES256" in err.message


def test_hs256_with_the_public_key_as_secret(world: World) -> None:
    """The classic confusion attack: an HMAC keyed with the (public) certificate key."""
    party = world.parties["rs"]
    body, _, env = _message(party)
    public_pem = party.material.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def mac(data: bytes) -> bytes:
        h = hmac.HMAC(public_pem, hashes.SHA256())
        h.update(data)
        return h.finalize()

    token = _forge(_header(party, env, alg="HS256"), body, mac)
    assert _code(lambda: _verifier(world).verify(body, token, env)).code == (
        "client.algorithm_mismatch"
    )


def test_alg_none_with_empty_signature(world: World) -> None:
    party = world.parties["ed"]
    body, _, env = _message(party)
    token = _forge(_header(party, env, alg="none"), body, lambda _: b"")
    assert _code(lambda: _verifier(world).verify(body, token, env)).code == (
        "client.algorithm_mismatch"
    )


def test_rsa_key_pinned_to_pss_refuses_pkcs1(world: World) -> None:
    """ps is pinned to PS256: a genuine RS256 signature by the same key is still refused."""
    party = world.parties["ps"]
    assert party.material.certificate is not None
    rs_signer = Signer(party.material.private_key, party.material.certificate, "RS256",
                       clock=lambda: T)
    env = _envelope(party.system_id)
    body = env.to_bytes()
    err = _code(lambda: _verifier(world).verify(body, rs_signer.sign(body, env), env))
    assert err.code == "client.algorithm_mismatch"


# --- certificates ------------------------------------------------------------------------------


def test_expired_certificate(world: World) -> None:
    body, token, env = _message(world.parties["expired"])
    err = _code(lambda: _verifier(world).verify(body, token, env))
    assert err.code == "client.certificate_expired"
    expiry = (ISSUED - timedelta(days=30)).strftime("%Y-%m-%d")
    assert f"expired on {expiry}" in err.message
    assert "lienthong keys generate" in err.message and "trust store" in err.message


def test_not_yet_valid_certificate(world: World) -> None:
    body, token, env = _message(world.parties["future"])
    err = _code(lambda: _verifier(world).verify(body, token, env))
    assert err.code == "client.certificate_expired" and "not valid before" in err.message


def test_certificate_validity_is_judged_at_verification_time(world: World) -> None:
    party = world.parties["future"]
    later = T + 11 * 86400
    body, token, env = _message(party, at=later)
    assert _verifier(world, now=later).verify(body, token, env).system_id == party.system_id


# --- envelope binding --------------------------------------------------------------------------


def test_signer_must_be_the_source(world: World) -> None:
    """es owns a trusted key but signs a message claiming to come from rs."""
    es, rs = world.parties["es"], world.parties["rs"]
    env = _envelope(rs.system_id)
    body = env.to_bytes()
    token = jws.detach_content(
        jws.serialize_compact(
            _header(es, env), body, _ec_key(es),
            registry=registry("ES256"),
        )
    )
    err = _code(lambda: _verifier(world).verify(body, token, env))
    assert err.code == "client.signer_mismatch" and err.field == "source"
    assert es.system_id in err.message and rs.system_id in err.message


def test_token_moved_to_another_body(world: World) -> None:
    party = world.parties["es"]
    _, token_a, _ = _message(party)
    body_b, _, env_b = _message(party)
    err = _code(lambda: _verifier(world).verify(body_b, token_a, env_b))
    assert err.code == "client.header_mismatch" and err.field == "lt-id"


def test_header_type_must_match(world: World) -> None:
    party = world.parties["ed"]
    body, _, env = _message(party)
    key = party.material.private_key
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    token = _forge(_header(party, env, **{"lt-type": "vn.gov.payment.completed"}), body, key.sign)
    err = _code(lambda: _verifier(world).verify(body, token, env))
    assert err.code == "client.header_mismatch" and err.field == "lt-type"


# --- time window -------------------------------------------------------------------------------


def test_stale_message(world: World) -> None:
    party = world.parties["es"]
    body, token, env = _message(party, at=T - MAX_AGE - 1)
    err = _code(lambda: _verifier(world).verify(body, token, env))
    assert err.code == "client.stale_message" and err.field == "iat"
    assert "301 s ago" in err.message
    body, token, env = _message(party, at=T - MAX_AGE)
    assert _verifier(world).verify(body, token, env)


def test_future_message_beyond_clock_skew(world: World) -> None:
    party = world.parties["ed"]
    body, token, env = _message(party, at=T + SKEW + 1)
    err = _code(lambda: _verifier(world).verify(body, token, env))
    assert err.code == "client.stale_message" and "in the future" in err.message
    body, token, env = _message(party, at=T + SKEW)
    assert _verifier(world).verify(body, token, env)


def test_retry_grace_applies_to_retried_deliveries_only(world: World) -> None:
    party = world.parties["es"]
    body, token, env = _message(party, at=T - MAX_AGE - GRACE / 2)
    verifier = _verifier(world)
    assert _code(lambda: verifier.verify(body, token, env)).code == "client.stale_message"
    assert verifier.verify(body, token, env, attempt=1).kid == party.kid
    body, token, env = _message(party, at=T - MAX_AGE - GRACE - 1)
    err = _code(lambda: verifier.verify(body, token, env, attempt=3))
    assert err.code == "client.stale_message"


@pytest.mark.parametrize("iat", ["1900000000", True, 1.9e9, None, 10**30])
def test_iat_must_be_unix_seconds(world: World, iat: object) -> None:
    party = world.parties["ed"]
    body, _, env = _message(party)
    key = party.material.private_key
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    token = _forge(_header(party, env, iat=iat), body, key.sign)
    err = _code(lambda: _verifier(world).verify(body, token, env))
    assert err.code == "client.stale_message" and err.field == "iat"


# --- replay ------------------------------------------------------------------------------------


def test_duplicate_is_reported_for_an_idempotent_answer(world: World) -> None:
    party = world.parties["es"]
    body, token, env = _message(party)
    verifier = _verifier(world, replay=ReplayCache(ttl=MAX_AGE + SKEW))
    assert verifier.verify(body, token, env).kid == party.kid
    with pytest.raises(DuplicateMessage) as info:
        verifier.verify(body, token, env)
    assert info.value.message_id == env.id and info.value.signer == party.system_id


def test_same_id_with_another_body_is_a_replay(world: World) -> None:
    party = world.parties["es"]
    message_id = str(uuid.uuid4())
    first = _message(party, id=message_id, data={"n": 1})
    second = _message(party, id=message_id, data={"n": 2})
    verifier = _verifier(world, replay=ReplayCache(ttl=MAX_AGE + SKEW))
    verifier.verify(*first)
    err = _code(lambda: verifier.verify(*second))
    assert err.code == "client.replayed_id" and err.field == "id"


def test_forged_message_does_not_poison_the_cache(world: World) -> None:
    party = world.parties["es"]
    message_id = str(uuid.uuid4())
    body, token, env = _message(party, id=message_id)
    forged = body.replace(b'"so":1', b'"so":2')
    replay = ReplayCache(ttl=MAX_AGE + SKEW)
    verifier = _verifier(world, replay=replay)
    err = _code(lambda: verifier.verify(forged, token, Envelope.from_bytes(forged)))
    assert err.code == "client.bad_signature"
    assert verifier.verify(body, token, env).kid == party.kid


def test_forget_lets_a_failed_message_be_processed_again(world: World) -> None:
    body, token, env = _message(world.parties["es"])
    replay = ReplayCache(ttl=MAX_AGE + SKEW)
    verifier = _verifier(world, replay=replay)
    verifier.verify(body, token, env)
    replay.forget(env.id)
    assert verifier.verify(body, token, env)


def test_replay_cache_expires_and_is_bounded() -> None:
    cache = ReplayCache(ttl=10, max_entries=3)
    assert cache.check("a", b"1", now=0) is False
    assert cache.check("a", b"1", now=9.9) is True
    assert cache.check("a", b"2", now=10.0) is False  # expired: a new message to the cache
    for name in "bcd":
        cache.check(name, b"x", now=11)
    assert len(cache) == 3
    assert cache.check("a", b"1", now=12) is False  # evicted as the oldest
    with pytest.raises(InvalidMessage):
        cache.check("d", b"other", now=12)
    with pytest.raises(ValueError):
        ReplayCache(ttl=0)


def test_from_settings(world: World, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, retry_tiers=[1.0, 2.0, 3.0])
    verifier = Verifier.from_settings(settings, world.trust)
    assert verifier.max_age == settings.signature_max_age
    assert verifier.clock_skew == settings.clock_skew
    assert verifier.retry_grace == 6.0
    assert Verifier.from_settings(settings).trust.directory == tmp_path / "trust"


def test_hub_as_relay_signs_for_other_sources(tmp_path: Path) -> None:
    """The hub signs, as a relay, what it verified at an entry point; receivers accept that
    from the hub's key only, not from any other system's."""
    from hub.envelope import Envelope
    from hub.signing import Signer, TrustStore, Verifier, generate

    hub_id, other_id = "VN:GOV:000.00.00.G22:lienthong", "VN:GOV:000.00.00.H41:vnpt"
    trust = TrustStore(tmp_path)
    signers = {}
    for sid, relay in ((hub_id, True), (other_id, False)):
        km = generate(sid)
        trust.add(km.certificate_pem())
        assert km.certificate is not None
        signers[sid] = Signer(km.private_key, km.certificate, relay=relay)
    env = Envelope.new(source="VN:GOV:000.00.00.H56:igate", type="vn.gov.dossier.submitted",
                       subject="000.00.00.H56-250101-0001", data={})
    body = env.to_bytes()
    verifier = Verifier(trust, max_age=60, clock_skew=5, retry_grace=0,
                        relays=frozenset({hub_id}))
    assert verifier.verify(body, signers[hub_id].sign(body, env), env).system_id == hub_id
    with pytest.raises(ConfigError):
        signers[other_id].sign(body, env)  # a non-relay signer refuses another source
