"""Authentication and access lists: API key, OAuth2 client credentials, client-certificate
fingerprint; default deny by event type and agency."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest
from test_api_support import (  # noqa: F401 - fixtures
    API_KEY,
    CERT_FINGERPRINT,
    CLIENT_ID,
    OAUTH_ID,
    OAUTH_SECRET,
    OTHER_KEY,
    STATUS,
    SUBMITTED,
    Hub,
    clients_config,
    dossier,
    keys_fixture,
    make_hub_fixture,
    new_code,
)

from hub.api.auth import (
    ClientIdentity,
    ClientRegistry,
    OAuthError,
    TokenIssuer,
    load_or_create_secret,
    sha256_hex,
)
from hub.api.errors import Unauthenticated
from hub.errors import AccessDenied, ConfigError
from hub.settings import PROJECT_ROOT


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
    assert reg.authenticate({"X-Client-Cert-SHA256": fingerprint}).system_id == CLIENT_ID
    token = reg.issue_token(OAUTH_ID, OAUTH_SECRET).access_token
    assert reg.authenticate({"Authorization": f"Bearer {token}"}).system_id == CLIENT_ID


@pytest.mark.parametrize(
    ("headers", "field", "words"),
    [
        ({}, None, "no credentials"),
        ({"X-API-Key": "wrong"}, "X-API-Key", "not known"),
        ({"Authorization": "Basic abc"}, "Authorization", "scheme"),
        ({"Authorization": "Bearer not-a-token"}, "Authorization", "not one the hub issued"),
        ({"X-Client-Cert-SHA256": "cd" * 32}, "X-Client-Cert-SHA256", "not known"),
        # A wrong key is refused even if a good certificate is also presented.
        ({"X-API-Key": "wrong", "X-Client-Cert-SHA256": CERT_FINGERPRINT}, "X-API-Key",
         "not known"),
    ],
)
def test_bad_credentials_are_refused(headers: dict[str, str], field: str | None,
                                     words: str) -> None:
    with pytest.raises(Unauthenticated) as info:
        registry().authenticate(headers)
    assert info.value.code == "client.unauthenticated"
    assert info.value.http_status == 401
    assert info.value.field == field
    assert words in info.value.message


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
    reg = ClientRegistry.load(PROJECT_ROOT / "mappings" / "clients.toml")
    client = reg.authenticate({"X-API-Key": "example-api-key-do-not-use"})
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
    hub = make_hub()
    hub.headers = {"X-Client-Cert-SHA256": CERT_FINGERPRINT.upper()}
    assert hub.submit(dossier(new_code())).status_code == 202
