"""Shared helpers of the REST API tests: keys made in temporary directories, a client registry,
and a hub app built around a real store. Imported by the test_api_* modules (no tests here);
a module using the fixtures imports ``keys_fixture`` / ``make_hub_fixture``."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pika
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hub.api.app import create_app
from hub.api.auth import ClientRegistry, sha256_hex
from hub.envelope import Envelope
from hub.settings import Settings
from hub.signing.jws import Signer
from hub.signing.keys import KeyMaterial, generate
from hub.signing.replay import ReplayCache
from hub.signing.truststore import TrustStore
from hub.signing.verifier import Verifier
from hub.store import Store
from hub.testing.store import scratch_url

CLIENT_ID = "VN:GOV:000.00.00.H56:igate"
OTHER_ID = "VN:GOV:000.00.00.H41:other"
API_KEY = "test-api-key-igate"
OTHER_KEY = "test-api-key-other"
OAUTH_ID = "igate-h56"
OAUTH_SECRET = "test-oauth-secret"
CERT_FINGERPRINT = "ab" * 32

SUBMITTED = "vn.gov.dossier.submitted"
STATUS = "vn.gov.dossier.status-changed"
PROGRESS = "vn.gov.dossier.progress-reported"


# The routes whose path names a dossier; their bodies repeat its code (``Hub.post``).
PATH_CODE = re.compile(r"^/v1/dossiers/([^/]+)/(?:status|progress|payments|postal-orders)$")


def dossier(code: str = "000.00.00.H56-250101-0001", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": code,
        "procedure_code": "2.002492",
        "agency_code": "000.00.00.H56",
        "applicant": {"identity_number": "001099012345", "name": "Nguyễn Văn A"},
        "channel": 2,
        "submitted_at": "2025-01-01T08:00:00+07:00",
    }
    body.update(changes)
    return body


_counter = iter(range(1, 10_000))


def new_code(agency: str = "000.00.00.H56") -> str:
    """A dossier code no other test uses (PostgreSQL databases are shared by a session)."""
    n = next(_counter)
    day = 1 + uuid.uuid4().int % 28
    return f"{agency}-2501{day:02d}-{n:04d}"


def clients_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "oauth": {"token_ttl_seconds": 60},
        "clients": [
            {
                "system_id": CLIENT_ID,
                "name": "igate",
                "allowed_types": ["vn.gov.dossier.*"],
                "allowed_agencies": ["000.00.00.H56*"],
                "api_key_sha256": [sha256_hex(API_KEY)],
                "oauth_client_id": OAUTH_ID,
                "oauth_secret_sha256": sha256_hex(OAUTH_SECRET),
                "cert_sha256": [CERT_FINGERPRINT],
            },
            {
                "system_id": OTHER_ID,
                "name": "other",
                "allowed_types": [STATUS],
                "allowed_agencies": ["000.00.00.H41"],
                "api_key_sha256": [sha256_hex(OTHER_KEY)],
            },
        ],
    }
    config.update(overrides)
    return config


@dataclass(frozen=True)
class Keys:
    hub: KeyMaterial
    client: KeyMaterial
    other: KeyMaterial

    def signer(self, material: KeyMaterial) -> Signer:
        assert material.certificate is not None
        return Signer(material.private_key, material.certificate, relay=True)


@pytest.fixture(scope="session", name="keys")
def keys_fixture() -> Keys:
    return Keys(hub=generate(Settings().hub_id), client=generate(CLIENT_ID),
                other=generate(OTHER_ID))


def sign(signer: Signer, body: bytes, event_type: str, request_id: str | None = None) -> str:
    env = Envelope(id=request_id or str(uuid.uuid4()), source=signer.system_id,
                   type=event_type, subject="-", time=datetime.now(UTC), data=None)
    return signer.sign(body, env)


@dataclass
class Hub:
    settings: Settings
    store: Store
    app: FastAPI
    http: TestClient
    keys: Keys
    client_signer: Signer
    registry: ClientRegistry
    headers: dict[str, str] = field(default_factory=lambda: {"X-API-Key": API_KEY})
    stopped: bool = False

    def post(self, path: str, data: Any, event_type: str, *, signer: Signer | None = None,
             headers: dict[str, str] | None = None, raw: bytes | None = None,
             token: str | None = None) -> Any:
        path_code = PATH_CODE.match(path)
        if raw is None and path_code and isinstance(data, dict) and "dossier_code" not in data:
            # As the contract asks: the body names the path's dossier (the signature covers
            # the body, not the path). A test of a body without it sends it raw.
            data = {"dossier_code": path_code[1], **data}
        body = raw if raw is not None else json.dumps(data, ensure_ascii=False).encode()
        sent = {"Content-Type": "application/json", **self.headers}
        sent["X-Signature"] = token if token is not None else sign(
            signer or self.client_signer, body, event_type)
        sent.update(headers or {})
        return self.http.post(path, content=body, headers=sent)

    def submit(self, data: dict[str, Any], **kwargs: Any) -> Any:
        return self.post("/v1/dossiers", data, SUBMITTED, **kwargs)

    def stop(self) -> None:
        """Leave the app (its lifespan ends: the relay stops). Idempotent."""
        if not self.stopped:
            self.stopped = True
            self.http.__exit__(None, None, None)

    def outbox_count(self) -> int:
        """Unpublished rows of this hub (a PostgreSQL database is shared by the session's
        tests, each with its own name prefix)."""
        exchange = f"{self.settings.name_prefix}.events"
        return sum(1 for item in self.store.outbox_pending(100_000, lease=None)
                   if item.exchange == exchange)


# Starlette's test client says the connection comes from the host "testclient", which is no
# address, so never a trusted TLS terminator; tests of certificates give an address (``peer``).
TEST_PEER = ("testclient", 50000)


def build_hub(settings: Settings, keys: Keys, store_url: str, *,
              peer: tuple[str, int] = TEST_PEER, **app_kwargs: Any) -> Hub:
    trust = TrustStore(settings.trust_dir)
    for material in (keys.client, keys.other, keys.hub):
        trust.add(material.certificate_pem())
    verifier = Verifier(trust, max_age=settings.signature_max_age,
                        clock_skew=settings.clock_skew, retry_grace=0.0,
                        replay=ReplayCache(ttl=settings.signature_max_age + settings.clock_skew))
    registry = app_kwargs.pop("registry", None) or ClientRegistry.from_dict(clients_config())
    store = Store.open(store_url)
    app_kwargs.setdefault("relay", False)
    app_kwargs.setdefault("adapters", {})
    app_kwargs.setdefault("verifier", verifier)
    app = create_app(settings, store=store, signer=keys.signer(keys.hub), registry=registry,
                     **app_kwargs)
    return Hub(settings, store, app, TestClient(app, client=peer), keys,
               keys.signer(keys.client), registry)


@pytest.fixture(name="make_hub")
def make_hub_fixture(tmp_path: Path, keys: Keys) -> Iterator[Callable[..., Hub]]:
    """Build hubs (entered: lifespan running); all are closed at the end of the test."""
    built: list[Hub] = []

    def make(store_url: str | None = None, settings: Settings | None = None,
             **app_kwargs: Any) -> Hub:
        s = settings or Settings(data_dir=tmp_path, name_prefix=f"lt{uuid.uuid4().hex[:8]}")
        hub = build_hub(s, keys, store_url or f"sqlite:///{tmp_path / 'hub.db'}", **app_kwargs)
        hub.http.__enter__()
        built.append(hub)
        return hub

    yield make
    for hub in reversed(built):
        hub.stop()
        hub.store.close()


def declare_events(amqp_url: str, prefix: str) -> str:
    """The events exchange and one queue bound to everything on it; returns the queue name."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        ch = conn.channel()
        ch.exchange_declare(f"{prefix}.events", "topic", durable=True)
        queue = f"{prefix}.all"
        ch.queue_declare(queue, durable=True)
        ch.queue_bind(queue, f"{prefix}.events", "#")
        return queue
    finally:
        conn.close()


def drain(amqp_url: str, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
    """Every message now in ``queue`` (acked)."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    got: list[tuple[pika.BasicProperties, bytes]] = []
    try:
        ch = conn.channel()
        while True:
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                return got
            got.append((props, body))
    finally:
        conn.close()


@pytest.fixture(name="relay_store_url", params=["sqlite", "postgresql"])
def relay_store_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """``store_url`` for tests of running relays: on PostgreSQL a schema of the test's own. A
    relay claims every unpublished row of its store, and the session's shared database holds
    other tests' rows, for exchanges that are gone: publishing one closes the relay's channel,
    and what it had in flight is sent again."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'relay.db'}"
        return
    with scratch_url(request.getfixturevalue("pg_url"), tmp_path) as url:
        yield url


@pytest.fixture(name="hubs")
def hubs_fixture(make_hub: Callable[..., Hub],
                 relay_store_url: str) -> Iterator[Callable[..., Hub]]:
    """``make_hub`` for those tests: its hubs are closed before their schema is dropped (this
    fixture ends before ``relay_store_url``)."""
    made: list[Hub] = []

    def make(*args: Any, **kwargs: Any) -> Hub:
        made.append(make_hub(*args, **kwargs))
        return made[-1]

    yield make
    for hub in made:
        hub.stop()
        hub.store.close()
