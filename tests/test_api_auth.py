"""Authentication and access lists: API key, OAuth2 client credentials, client-certificate
fingerprint (only from a trusted TLS terminator, alone or required with the key); default deny
by event type and agency."""

from __future__ import annotations

import base64
import tomllib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pydantic import ValidationError
from test_api_support import (  # noqa: F401 - fixtures
    API_KEY,
    CERT_FINGERPRINT,
    CLIENT_ID,
    OAUTH_ID,
    OAUTH_SECRET,
    OTHER_ID,
    OTHER_KEY,
    STATUS,
    SUBMITTED,
    Hub,
    Keys,
    build_hub,
    clients_config,
    dossier,
    keys_fixture,
    make_hub_fixture,
    new_code,
)
from typer.testing import CliRunner

from hub.api.auth import (
    UNKNOWN_PEER,
    ClientIdentity,
    ClientRegistry,
    OAuthError,
    Peer,
    TokenIssuer,
    TrustedProxies,
    authorize_callback,
    load_or_create_secret,
    resolve_peer,
    sha256_hex,
)
from hub.api.errors import Unauthenticated
from hub.cli import app as cli_app
from hub.cli import serve as serve_cli
from hub.errors import AccessDenied, ConfigError
from hub.settings import PROJECT_ROOT, Settings

# A peer that passed the trusted-proxies check, as hub.api.auth.RequestPeer records it.
TERMINATOR = Peer("127.0.0.1", True)
OTHER_CERT = "cd" * 32


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def registry(clock: Callable[[], float] | None = None) -> ClientRegistry:
    return ClientRegistry.from_dict(clients_config(), token_secret=b"s" * 32,
                                    clock=clock or Clock())


# -- the registry, without HTTP ---------------------------------------------------------------

def test_each_credential_names_its_client() -> None:
    reg = registry()
    assert reg.authenticate({"X-API-Key": API_KEY}).system_id == CLIENT_ID
    assert reg.authenticate({"x-api-key": API_KEY}).system_id == CLIENT_ID
    fingerprint = ":".join(CERT_FINGERPRINT[i:i + 2].upper() for i in range(0, 64, 2))
    assert reg.authenticate({"X-Client-Cert-SHA256": fingerprint},
                            peer=TERMINATOR).system_id == CLIENT_ID
    token = reg.issue_token(OAUTH_ID, OAUTH_SECRET).access_token
    assert reg.authenticate({"Authorization": f"Bearer {token}"}).system_id == CLIENT_ID


@pytest.mark.parametrize(
    ("headers", "field", "words"),
    [
        ({}, None, "no credentials"),
        ({"X-API-Key": "wrong"}, "X-API-Key", "not known"),
        ({"Authorization": "Basic abc"}, "Authorization", "scheme"),
        ({"Authorization": "Bearer not-a-token"}, "Authorization", "not one the hub issued"),
        ({"X-Client-Cert-SHA256": OTHER_CERT}, "X-Client-Cert-SHA256", "not known"),
        # A wrong key is refused even if a good certificate is also presented.
        ({"X-API-Key": "wrong", "X-Client-Cert-SHA256": CERT_FINGERPRINT}, "X-API-Key",
         "not known"),
    ],
)
def test_bad_credentials_are_refused(headers: dict[str, str], field: str | None,
                                     words: str) -> None:
    with pytest.raises(Unauthenticated) as info:
        registry().authenticate(headers, peer=TERMINATOR)
    assert info.value.code == "client.unauthenticated"
    assert info.value.http_status == 401
    assert info.value.field == field
    assert words in info.value.message


# -- the certificate header and who sent it ---------------------------------------------------

@pytest.mark.parametrize(
    ("peer", "words"),
    [
        (Peer("203.0.113.9", False), "came from 203.0.113.9, which is not a trusted TLS"),
        (Peer("testclient", False), "came from testclient"),
        (UNKNOWN_PEER, "does not know"),
    ],
)
def test_the_certificate_header_from_an_untrusted_peer_is_refused(peer: Peer,
                                                                  words: str) -> None:
    reg = registry()
    for headers in ({"X-Client-Cert-SHA256": CERT_FINGERPRINT},
                    # Even beside a good key: the header is a forgery or a misconfiguration.
                    {"X-API-Key": API_KEY, "X-Client-Cert-SHA256": CERT_FINGERPRINT}):
        with pytest.raises(Unauthenticated) as info:
            reg.authenticate(headers, peer=peer)
        assert info.value.field == "X-Client-Cert-SHA256"
        assert words in info.value.message
        assert "trusted_proxies" in info.value.message  # what to configure
    # Outside a request (no RequestPeer) the peer is unknown: refused, never honoured.
    with pytest.raises(Unauthenticated, match="does not know"):
        reg.authenticate({"X-Client-Cert-SHA256": CERT_FINGERPRINT})
    # Without the header the peer does not matter.
    assert reg.authenticate({"X-API-Key": API_KEY}, peer=peer).system_id == CLIENT_ID


def test_trusted_proxies() -> None:
    default = TrustedProxies(Settings().trusted_proxies)
    for host in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        assert default.trusts(host), host
    for host in ("10.0.0.1", "::2", "::ffff:10.0.0.1", "testclient", "", None):
        assert not default.trusts(host), host
    listed = TrustedProxies(["10.1.2.0/24", "2001:db8::5"])
    assert listed.trusts("10.1.2.77") and listed.trusts("2001:db8::5")
    assert not listed.trusts("10.1.3.1") and not listed.trusts("127.0.0.1")


def test_trusted_proxies_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().trusted_proxies == ["127.0.0.0/8", "::1/128"]
    assert Settings(trusted_proxies=["10.0.0.5", "10.1.0.9/16"]).trusted_proxies == [
        "10.0.0.5/32", "10.1.0.0/16"]
    monkeypatch.setenv("LIENTHONG_TRUSTED_PROXIES", '["192.0.2.1"]')
    assert Settings().trusted_proxies == ["192.0.2.1/32"]
    with pytest.raises(ValidationError) as info:
        Settings(trusted_proxies=["tls.example.vn"])
    text = str(info.value)
    assert "trusted_proxies" in text and "'tls.example.vn' is not an IP address" in text


def test_serve_shows_the_app_the_true_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    # uvicorn's proxy headers would replace the terminator's address by X-Forwarded-For.
    seen: list[uvicorn.Config] = []

    def run(server: uvicorn.Server, sockets: Any = None) -> None:
        seen.append(server.config)
        server.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)
    serve_cli.serve(host="127.0.0.1", port=1, workers=1)
    assert [config.proxy_headers for config in seen] == [False]


# -- certificate and key together -------------------------------------------------------------

def both_factors_registry() -> ClientRegistry:
    config = clients_config()
    config["clients"][0]["require_certificate"] = True
    config["clients"][1]["cert_sha256"] = [OTHER_CERT]
    return ClientRegistry.from_dict(config, token_secret=b"s" * 32, clock=Clock())


def test_a_client_may_need_its_certificate_and_its_key() -> None:
    reg = both_factors_registry()
    cert = {"X-Client-Cert-SHA256": CERT_FINGERPRINT}
    token = reg.issue_token(OAUTH_ID, OAUTH_SECRET).access_token
    for secret in ({"X-API-Key": API_KEY}, {"Authorization": f"Bearer {token}"}):
        assert reg.authenticate({**secret, **cert}, peer=TERMINATOR).system_id == CLIENT_ID
        with pytest.raises(Unauthenticated) as info:
            reg.authenticate(secret, peer=TERMINATOR)
        assert info.value.field == "X-Client-Cert-SHA256"
        assert f"{CLIENT_ID} must also present its client certificate" in info.value.message
        # Another client's certificate, or one nobody has, is not its certificate.
        for fingerprint in (OTHER_CERT, "ef" * 32):
            with pytest.raises(Unauthenticated, match=f"not one of {CLIENT_ID}'s"):
                reg.authenticate({**secret, "X-Client-Cert-SHA256": fingerprint},
                                 peer=TERMINATOR)
        # The certificate is checked for where it came from first of all.
        with pytest.raises(Unauthenticated, match="not a trusted TLS terminator"):
            reg.authenticate({**secret, **cert}, peer=Peer("198.51.100.1", False))
    with pytest.raises(Unauthenticated) as info:
        reg.authenticate(cert, peer=TERMINATOR)
    assert info.value.field == "X-API-Key"
    assert "as well as its client certificate" in info.value.message
    # A client without the option keeps either credential alone.
    assert reg.authenticate({"X-API-Key": OTHER_KEY}, peer=TERMINATOR).system_id == OTHER_ID
    assert reg.authenticate({"X-Client-Cert-SHA256": OTHER_CERT},
                            peer=TERMINATOR).system_id == OTHER_ID
    assert reg.get(CLIENT_ID).require_certificate  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"cert_sha256": []}, "cert_sha256 is empty"),
        ({"api_key_sha256": [], "oauth_client_id": None, "oauth_secret_sha256": None},
         "no API key nor OAuth2 client"),
    ],
)
def test_require_certificate_needs_both_factors(change: dict[str, object], words: str) -> None:
    config = clients_config()
    config["clients"][0].update({"require_certificate": True, **change})
    with pytest.raises(ConfigError, match=words) as info:
        ClientRegistry.from_dict(config)
    assert CLIENT_ID in info.value.message


def test_clients_add_can_require_the_certificate(tmp_path: Path) -> None:
    runner = CliRunner()
    help_text = runner.invoke(cli_app, ["clients", "add", "--help"],
                              env={"COLUMNS": "200", "NO_COLOR": "1"}).output
    assert "--require-certificate" in help_text and "a leaked key" in help_text
    base = ["clients", "add", "--system-id", CLIENT_ID, "--name", "igate", "--type",
            "vn.gov.dossier.*", "--agency", "000.00.00.H56*"]
    fingerprint = ":".join([CERT_FINGERPRINT[i:i + 2].upper() for i in range(0, 64, 2)])
    result = runner.invoke(cli_app, [*base, "--cert-sha256", fingerprint,
                                     "--require-certificate"])
    assert result.exit_code == 0, result.output
    block = result.stdout[result.stdout.index("[[clients]]"):]
    assert "require_certificate = true" in block
    (tmp_path / "clients.toml").write_text(block)
    reg = ClientRegistry.load(tmp_path / "clients.toml")
    assert reg.clients[0].require_certificate
    checked = runner.invoke(cli_app, ["clients", "check", str(tmp_path / "clients.toml")])
    assert "certificate required" in checked.output
    # Without a fingerprint, or with nothing to go with it, the option cannot hold.
    for extra in (["--require-certificate"],
                  ["--no-api-key", "--cert-sha256", CERT_FINGERPRINT, "--require-certificate"]):
        refused = runner.invoke(cli_app, [*base, *extra])
        assert refused.exit_code == 2
        assert "--require-certificate" in refused.output
    plain = runner.invoke(cli_app, [*base, "--cert-sha256", CERT_FINGERPRINT])
    assert "require_certificate" not in plain.stdout


def test_tokens_expire() -> None:
    clock = Clock()
    reg = registry(clock)
    token = reg.issue_token(OAUTH_ID, OAUTH_SECRET)
    assert token.expires_in == 60
    clock.now += 59
    assert reg.authenticate({"Authorization": f"Bearer {token.access_token}"})
    clock.now += 2
    with pytest.raises(Unauthenticated, match="expired at"):
        reg.authenticate({"Authorization": f"Bearer {token.access_token}"})


def test_tokens_of_another_secret_are_refused() -> None:
    token = TokenIssuer(b"x" * 32, clock=Clock()).issue(CLIENT_ID).access_token
    with pytest.raises(Unauthenticated, match="not one the hub issued"):
        registry().authenticate({"Authorization": f"Bearer {token}"})


def test_wrong_client_secret() -> None:
    with pytest.raises(OAuthError) as info:
        registry().issue_token(OAUTH_ID, "wrong")
    assert info.value.oauth_error == "invalid_client"
    assert (info.value.code, info.value.http_status) == ("client.unauthenticated", 401)
    with pytest.raises(OAuthError):
        registry().issue_token("nobody", OAUTH_SECRET)


def test_access_lists_deny_by_default() -> None:
    reg = registry()
    client = reg.authenticate({"X-API-Key": API_KEY})
    reg.authorize(client, SUBMITTED, "000.00.00.H56")
    reg.authorize(client, STATUS, "000.00.00.H56.12")  # prefix entry
    with pytest.raises(AccessDenied) as info:
        reg.authorize(client, "vn.gov.payment.requested", "000.00.00.H56")
    assert info.value.field == "type" and "vn.gov.payment.requested" in info.value.message
    with pytest.raises(AccessDenied) as info:
        reg.authorize(client, SUBMITTED, "000.00.00.H41")
    assert info.value.field == "agency_code" and "000.00.00.H41" in info.value.message
    with pytest.raises(AccessDenied):
        reg.authorize(client, SUBMITTED, None)  # no agency: only for '*' clients
    nobody = ClientIdentity("VN:GOV:000.00.00.H56:x", "x", frozenset(), frozenset())
    with pytest.raises(AccessDenied, match="nothing"):
        reg.authorize(nobody, SUBMITTED, "000.00.00.H56")
    everyone = ClientIdentity("VN:GOV:000.00.00.H56:y", "y", frozenset({"*"}), frozenset({"*"}))
    reg.authorize(everyone, SUBMITTED, None)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"api_key_sha256": ["not-hex"]}, "not a SHA-256"),
        ({"system_id": "igate"}, "not a system identifier"),
        ({"oauth_secret_sha256": None}, "no oauth_secret_sha256"),
        ({"unknown": 1}, "Extra inputs"),
    ],
)
def test_bad_clients_file_is_a_config_error(change: dict[str, object], words: str) -> None:
    config = clients_config()
    config["clients"][0].update(change)
    with pytest.raises(ConfigError, match=words):
        ClientRegistry.from_dict(config)


def test_duplicate_credentials_are_refused() -> None:
    config = clients_config()
    config["clients"][1]["api_key_sha256"] = [sha256_hex(API_KEY)]
    with pytest.raises(ConfigError, match="unique"):
        ClientRegistry.from_dict(config)


def test_example_clients_file_loads() -> None:
    path = PROJECT_ROOT / "mappings" / "clients.toml"
    # As shipped no client is live: a published example key opens nothing.
    shipped = ClientRegistry.load(path)
    assert shipped.clients == []
    with pytest.raises(Unauthenticated):
        shipped.authenticate({"X-API-Key": "example-api-key-do-not-use"})
    with pytest.raises(OAuthError):
        shipped.issue_token("example-igate-h56", "example-secret-do-not-use")

    # The commented-out example, uncommented, is valid TOML and a valid client entry.
    lines = path.read_text(encoding="utf-8").splitlines()
    start = lines.index("# [[clients]]")
    example = [line.removeprefix("#").removeprefix(" ") for line in lines[start:]]
    text = "\n".join(lines[:start] + example)
    reg = ClientRegistry.from_dict(tomllib.loads(text), source="example")
    assert len(reg.clients) == 1
    example_cert = {"X-Client-Cert-SHA256": sha256_hex("example-certificate-do-not-use")}
    client = reg.authenticate({"X-API-Key": "example-api-key-do-not-use", **example_cert},
                              peer=TERMINATOR)
    assert client.require_certificate
    assert client.may_send(SUBMITTED) and client.may_send("vn.gov.payment.requested")
    assert not client.may_send("vn.gov.payment.completed")  # default deny
    assert reg.issue_token("example-igate-h56", "example-secret-do-not-use").access_token


def test_missing_clients_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        ClientRegistry.load(tmp_path / "nope.toml")


def test_token_secret_is_shared_by_processes(tmp_path: Path) -> None:
    path = tmp_path / "d" / "oauth.key"
    first = load_or_create_secret(path)
    assert len(first) == 32 and load_or_create_secret(path) == first
    assert path.stat().st_mode & 0o077 == 0


# -- over HTTP ----------------------------------------------------------------------------------

def test_http_refusals(make_hub: Callable[..., Hub]) -> None:
    hub = make_hub()
    data = dossier(new_code())
    no_key = hub.submit(data, headers={"X-API-Key": ""})
    assert no_key.status_code == 401
    hub.headers = {}
    missing = hub.submit(data)
    assert missing.status_code == 401
    assert missing.json()["code"] == "client.unauthenticated"
    assert missing.headers["content-type"] == "application/problem+json"
    assert "Bearer" in missing.headers["www-authenticate"]
    hub.headers = {"X-API-Key": "wrong"}
    wrong = hub.submit(data)
    assert (wrong.status_code, wrong.json()["field"]) == (401, "X-API-Key")
    assert wrong.json()["origin"] == "hub"

    # Another client, not allowed to submit dossiers nor to act for H56.
    hub.headers = {"X-API-Key": OTHER_KEY}
    other = hub.keys.signer(hub.keys.other)
    denied = hub.submit(data, signer=other)
    assert (denied.status_code, denied.json()["code"]) == (403, "client.access_denied")
    assert denied.json()["field"] == "type"
    status = {"status": 2, "at": "2025-01-01T09:00:00+07:00"}
    denied = hub.post(f"/v1/dossiers/{data['code']}/status", status, STATUS, signer=other)
    assert (denied.status_code, denied.json()["field"]) == (403, "agency_code")
    assert "000.00.00.H56" in denied.json()["message"]
    assert hub.outbox_count() == 0


def test_oauth_flow_over_http(make_hub: Callable[..., Hub]) -> None:
    hub = make_hub()
    form = {"grant_type": "client_credentials", "client_id": OAUTH_ID,
            "client_secret": OAUTH_SECRET}
    answer = hub.http.post("/v1/oauth/token", data=form)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    grant = answer.json()
    assert grant["token_type"] == "Bearer" and grant["expires_in"] == 60
    hub.headers = {"Authorization": f"Bearer {grant['access_token']}"}
    assert hub.submit(dossier(new_code())).status_code == 202

    basic = base64.b64encode(f"{OAUTH_ID}:{OAUTH_SECRET}".encode()).decode()
    answer = hub.http.post("/v1/oauth/token", data={"grant_type": "client_credentials"},
                           headers={"Authorization": f"Basic {basic}"})
    assert answer.status_code == 200

    bad = hub.http.post("/v1/oauth/token", data={**form, "client_secret": "nope"})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    grant_type = hub.http.post("/v1/oauth/token", data={**form, "grant_type": "password"})
    assert grant_type.status_code == 400
    assert grant_type.json()["code"] == "client.unsupported_grant_type"
    assert grant_type.json()["field"] == "grant_type"


def test_expired_token_over_http(make_hub: Callable[..., Hub]) -> None:
    clock = Clock(now=__import__("time").time())
    reg = ClientRegistry.from_dict(clients_config(), token_secret=b"k" * 32, clock=clock)
    hub = make_hub(registry=reg)
    token = reg.issue_token(OAUTH_ID, OAUTH_SECRET).access_token
    clock.now += 120
    hub.headers = {"Authorization": f"Bearer {token}"}
    answer = hub.submit(dossier(new_code()))
    assert answer.status_code == 401
    assert "expired" in answer.json()["message"] and answer.json()["field"] == "Authorization"


def test_client_certificate_over_http(make_hub: Callable[..., Hub]) -> None:
    # The TLS terminator beside the hub: loopback, trusted by default.
    hub = make_hub(peer=("127.0.0.1", 50000))
    hub.headers = {"X-Client-Cert-SHA256": CERT_FINGERPRINT.upper()}
    assert hub.submit(dossier(new_code())).status_code == 202


def test_client_certificate_from_an_untrusted_peer_over_http(make_hub: Callable[..., Hub],
                                                             tmp_path: Path) -> None:
    headers = {"X-Client-Cert-SHA256": CERT_FINGERPRINT}
    # The test client's peer, "testclient", is no address: never a terminator.
    hub = make_hub()
    hub.headers = headers
    refused = hub.submit(dossier(new_code()))
    assert refused.status_code == 401
    body = refused.json()
    assert (body["code"], body["field"]) == ("client.unauthenticated", "X-Client-Cert-SHA256")
    assert "testclient" in body["message"] and "trusted_proxies" in body["message"]

    # A terminator on another host is trusted once listed, and loopback then is not.
    listed = Settings(data_dir=tmp_path, name_prefix=hub.settings.name_prefix,
                      trusted_proxies=["192.0.2.0/28"])
    remote = make_hub(settings=listed, peer=("192.0.2.7", 44321))
    remote.headers = headers
    assert remote.submit(dossier(new_code())).status_code == 202
    local = make_hub(settings=listed, peer=("127.0.0.1", 44321))
    local.headers = headers
    answer = local.submit(dossier(new_code()))
    assert answer.status_code == 401 and "came from 127.0.0.1" in answer.json()["message"]
    assert hub.outbox_count() == 1


def test_certificate_and_key_over_http(make_hub: Callable[..., Hub]) -> None:
    hub = make_hub(registry=both_factors_registry(), peer=("::1", 50000))
    key_only = hub.submit(dossier(new_code()))
    assert key_only.status_code == 401
    assert key_only.json()["field"] == "X-Client-Cert-SHA256"
    hub.headers = {"X-API-Key": API_KEY, "X-Client-Cert-SHA256": CERT_FINGERPRINT}
    assert hub.submit(dossier(new_code())).status_code == 202


# -- the agency of a dossier's own code (REST and SOAP) ----------------------------------------

def refusals(metrics: str, door: str, code: str) -> float:
    """``lienthong_refused_total{door, code}`` in a /metrics page (labels sorted by name)."""
    line = f'lienthong_refused_total{{code="{code}",door="{door}"}} '
    return next((float(x[len(line):]) for x in metrics.splitlines() if x.startswith(line)), 0.0)


def test_a_client_writes_only_dossiers_of_its_agencies(make_hub: Callable[..., Hub]) -> None:
    """igate may act for 000.00.00.H56*: a dossier coded for H57 is refused whatever agency
    its body names, and leaves nothing behind (no outbox row, log row nor timeline)."""
    hub = make_hub()
    theirs = new_code("000.00.00.H57")
    answer = hub.submit(dossier(theirs))  # agency_code H56, code H57
    assert answer.status_code == 403, answer.text
    problem = answer.json()
    assert (problem["code"], problem["field"]) == ("client.access_denied", "code")
    assert "000.00.00.H57" in problem["message"] and CLIENT_ID in problem["message"]
    status = {"status": 2, "previous_status": 1, "at": "2025-01-01T09:00:00+07:00"}
    assert hub.post(f"/v1/dossiers/{theirs}/status", status, STATUS).status_code == 403
    assert hub.outbox_count() == 0
    assert hub.store.timeline(theirs) == [] and hub.store.log_rows(subject=theirs) == []
    assert refusals(hub.http.get("/metrics").text, "/v1/dossiers", "client.access_denied") == 1
    # Its own agency's dossiers, sub-agencies included, are taken.
    assert hub.submit(dossier(new_code())).status_code == 202
    sub = new_code("000.00.00.H56.12")
    assert hub.submit(dossier(sub, agency_code="000.00.00.H56.12")).status_code == 202
    assert hub.outbox_count() == 2


def test_a_client_writes_only_dossiers_of_its_agencies_over_soap(
        keys: Keys, store_url: str, tmp_path: Path) -> None:
    import zeep
    from cryptography.hazmat.primitives.asymmetric import rsa
    from requests import Session
    from zeep.exceptions import Fault

    from hub.api.soap import response_signer_id
    from hub.api.soap.contract import NS
    from hub.api.soap.dsig import ResponseSigner
    from hub.signing.keys import generate
    from hub.signing.truststore import TrustStore
    from hub.simulation import SimulatorServer
    from hub.testing.soap import SigningPlugin

    settings = Settings(data_dir=tmp_path, name_prefix=f"lt{uuid.uuid4().hex[:8]}")
    # XML-DSig here is RSA-SHA256: the hub's SOAP key and an RSA key of igate's own.
    hub_soap, igate = generate(response_signer_id(settings), "RS256"), generate(CLIENT_ID,
                                                                               "RS256")
    assert isinstance(hub_soap.private_key, rsa.RSAPrivateKey) and hub_soap.certificate
    assert isinstance(igate.private_key, rsa.RSAPrivateKey) and igate.certificate
    TrustStore(settings.trust_dir).add(igate.certificate_pem())
    hub = build_hub(settings, keys, store_url, soap_signer=ResponseSigner(
        hub_soap.private_key, hub_soap.certificate))
    server = SimulatorServer(hub.app, lifespan="on")
    session = Session()
    session.headers["X-API-Key"] = API_KEY
    try:
        base = server.start()
        client = zeep.Client(  # type: ignore[no-untyped-call]
            f"{base}/soap/v1?wsdl", transport=zeep.Transport(session=session),  # type: ignore[no-untyped-call]
            plugins=[SigningPlugin(igate.private_key, igate.certificate,
                                   hub_certificate=hub_soap.certificate)])
        service = client.bind("IntakeService", "IntakeSoap11")

        def submit(code: str) -> Any:
            return service.SubmitDossier(createdAt=datetime.now(UTC), dossier={
                "code": code, "procedureCode": "2.002492", "agencyCode": "000.00.00.H56",
                "applicant": {"identityNumber": "038090001234", "name": "Nguyễn Văn An"},
                "channel": 2, "submittedAt": "2025-03-01T08:00:00"})

        theirs = new_code("000.00.00.H57")
        with pytest.raises(Fault) as info:
            submit(theirs)
        detail = info.value.detail
        assert detail is not None
        assert detail.findtext(f".//{{{NS}}}code") == "client.access_denied"
        assert detail.findtext(f".//{{{NS}}}field") == "dossier/code"
        assert hub.outbox_count() == 0
        assert hub.store.timeline(theirs) == [] and hub.store.log_rows(subject=theirs) == []
        metrics = session.get(f"{base}/metrics").text
        assert refusals(metrics, "/soap/v1", "client.access_denied") == 1
        assert submit(new_code()).duplicate is False
        assert hub.outbox_count() == 1
    finally:
        server.stop()
        hub.store.close()


# -- the callbacks a client may call ----------------------------------------------------------

def test_callbacks_are_granted_one_by_one() -> None:
    config = clients_config()
    config["clients"][0]["callbacks"] = ["provincial"]
    reg = ClientRegistry.from_dict(config)
    igate = reg.authenticate({"X-API-Key": API_KEY})
    other = reg.authenticate({"X-API-Key": OTHER_KEY})
    assert igate.may_call_back("provincial") and not igate.may_call_back("postal")
    assert not other.may_call_back("provincial")  # default deny
    authorize_callback(igate, "provincial")
    with pytest.raises(AccessDenied) as info:
        authorize_callback(other, "provincial")
    assert info.value.field == "system" and "callbacks" in info.value.message
    for bad in (["*"], ["provincial*"], ["Provincial"], [""]):
        config["clients"][0]["callbacks"] = bad
        with pytest.raises(ConfigError, match="not an adapter name"):
            ClientRegistry.from_dict(config)


def test_clients_add_can_grant_a_callback(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["clients", "add", "--system-id", CLIENT_ID, "--name", "igate", "--agency",
            "000.00.00.H56*"]
    # A system that only calls back (a province pushing status changes) needs no --type.
    result = runner.invoke(cli_app, [*base, "--callback", "provincial"])
    assert result.exit_code == 0, result.output
    block = result.stdout[result.stdout.index("[[clients]]"):]
    assert 'callbacks = ["provincial"]' in block
    (tmp_path / "clients.toml").write_text(block)
    client = ClientRegistry.load(tmp_path / "clients.toml").clients[0]
    assert client.allowed_callbacks == {"provincial"} and client.allowed_types == frozenset()
    checked = runner.invoke(cli_app, ["clients", "check", str(tmp_path / "clients.toml")])
    assert "callbacks: provincial" in checked.output
    for extra, words in (([], "may do nothing"), (["--callback", "postal*"], "not an adapter")):
        refused = runner.invoke(cli_app, [*base, *extra])
        assert refused.exit_code == 2 and words in refused.output


# -- the caller's address -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("peer", "forwarded", "address"),
    [
        ("203.0.113.9", ["198.51.100.7"], "203.0.113.9"),  # no trusted proxy: header ignored
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", ["198.51.100.7"], "198.51.100.7"),
        ("127.0.0.1", ["198.51.100.7, 10.0.0.2"], "10.0.0.2"),  # the nearest untrusted hop
        ("127.0.0.1", ["198.51.100.7, 127.0.0.2"], "198.51.100.7"),  # trusted hops skipped
        ("127.0.0.1", ["198.51.100.7", "127.0.0.2"], "198.51.100.7"),  # header repeated
        ("127.0.0.1", ["garbage"], "127.0.0.1"),
        ("::ffff:127.0.0.1", ["2001:db8::1"], "2001:db8::1"),
    ],
)
def test_the_callers_address(peer: str, forwarded: list[str], address: str) -> None:
    scope = {"type": "http", "client": (peer, 1234),
             "headers": [(b"x-forwarded-for", f.encode()) for f in forwarded]}
    resolved = resolve_peer(scope, TrustedProxies(Settings().trusted_proxies))
    assert resolved.address == address
    assert resolved.trusted is (peer != "203.0.113.9")
