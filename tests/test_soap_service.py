"""The SOAP entry point end to end: a real uvicorn server on a socket, the real intake and store
(SQLite and PostgreSQL), zeep calling every operation in SOAP 1.1 and 1.2 against the served
WSDL; attacks and mistakes answered with the right fault in the right version's form, leaving
nothing in the store; signatures that xmlsec1 verifies."""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import uvicorn
import zeep
from conftest import open_store
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from lxml import etree
from sqlalchemy import func, select
from zeep.cache import InMemoryCache
from zeep.exceptions import Fault, SignatureVerificationFailed
from zeep.plugins import HistoryPlugin
from zeep.transports import Transport

from hub.api import soap
from hub.api.auth import ClientRegistry, sha256_hex
from hub.api.soap.contract import NS, XSD_NAME, Contract
from hub.api.soap.dsig import RequestVerifier, ResponseSigner, sign_element
from hub.api.soap.envelope import SOAP11, SOAP12, SoapVersion
from hub.api.soap.freshness import AgeWindow
from hub.api.soap.routes import build_router
from hub.errors import RetryableError
from hub.intake import tables as intake_tables
from hub.intake.drafts import UPSTREAM_PROOF
from hub.intake.jobs import Accepted
from hub.intake.service import IntakeService
from hub.settings import Settings
from hub.signing import Signer, TrustStore, generate
from hub.signing.keys import KeyMaterial, kid_of
from hub.store import Store
from hub.store import tables as store_tables
from hub.testing.soap import SigningPlugin
from hub.testing.waiting import wait_for

HUB_ID = "VN:GOV:000.00.00.G22:lienthong"
CLIENT = "VN:GOV:000.00.00.H56:igate"
OTHER = "VN:GOV:000.00.00.H41:dvc"
API_KEY = "soap-test-key-igate"
OTHER_KEY = "soap-test-key-dvc"
VERSIONS = {"1.1": SOAP11, "1.2": SOAP12}
PORTS = {"1.1": "IntakeSoap11", "1.2": "IntakeSoap12"}
DS = "http://www.w3.org/2000/09/xmldsig#"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_codes = itertools.count(1)


def now() -> datetime:
    """The signing time a client puts in createdAt (zeep writes it with its time zone)."""
    return datetime.now(UTC)


def new_dossier_code() -> str:
    n = next(_codes)
    return f"000.00.00.H56-2503{1 + n // 9999 % 28:02d}-{1 + n % 9999:04d}"


def dossier(code: str | None = None, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "code": code or new_dossier_code(),
        "procedureCode": "2.002492",
        "procedureName": "Cấp giấy phép xây dựng",
        "agencyCode": "000.00.00.H56",
        "applicant": {"identityNumber": "038090001234", "name": "Nguyễn Văn An",
                      "birthDate": "1990-05-01"},
        "channel": 2,
        "submittedAt": "2025-03-01T08:00:00",
        "attachments": {"attachment": [{
            "id": "a1", "name": "don.pdf", "url": "https://files.example.vn/a1", "size": 1234,
            "sha256": "ab" * 32}]},
        "fees": {"fee": [{"code": "LP1", "name": "Lệ phí", "amount": "75000"}]},
    }
    data.update(changes)
    return data


@dataclass(frozen=True)
class Identity:
    """A system's key and certificate, typed for signxml."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    material: KeyMaterial

    @property
    def pem(self) -> bytes:
        return self.material.certificate_pem()


def identity(system_id: str, alg: str = "RS256", **kwargs: Any) -> Identity:
    material = generate(system_id, alg, **kwargs)
    assert isinstance(material.private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    assert material.certificate is not None
    return Identity(material.private_key, material.certificate, material)


@dataclass
class Keys:
    client: Identity
    other: Identity
    rogue: Identity  # claims to be the client; not trusted
    hub: Identity  # the hub's JWS key
    hub_soap: Identity  # the hub's RSA key for SOAP responses


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(client=identity(CLIENT, "RS256"), other=identity(OTHER, "RS256"),
                rogue=identity(CLIENT, "RS256"), hub=identity(HUB_ID, "ES256"),
                hub_soap=identity(soap.response_signer_id(Settings(hub_id=HUB_ID)), "RS256"))


class RecordingTransport(Transport):
    """Keeps the HTTP status and content type of the last answer (zeep's Fault has neither)."""

    last_status: int = 0
    last_content_type: str = ""

    def post_xml(self, address: str, envelope: Any, headers: Any) -> requests.Response:
        response: requests.Response = super().post_xml(  # type: ignore[no-untyped-call]
            address, envelope, headers)
        self.last_status = response.status_code
        self.last_content_type = response.headers.get("content-type", "")
        return response


class TamperingPlugin(SigningPlugin):
    """Signs, then changes the applicant's name: the signature no longer holds."""

    def egress(self, envelope: etree._Element, http_headers: dict[str, str], operation: Any,
               binding_options: Any) -> tuple[etree._Element, dict[str, str]]:
        envelope, http_headers = super().egress(envelope, http_headers, operation,
                                                binding_options)
        for name in envelope.iter(f"{{{NS}}}name", f"{{{NS}}}officer"):
            name.text = "Someone Else"
        return envelope, http_headers


class _Server:
    def __init__(self, app: FastAPI) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=20, message="uvicorn to start")
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


@dataclass
class Hub:
    base: str
    store: Store
    keys: Keys
    settings: Settings
    cache: InMemoryCache = field(default_factory=InMemoryCache)

    @property
    def url(self) -> str:
        return f"{self.base}{soap.PATH}"

    def rows(self) -> dict[str, int]:
        """Counts of everything an accepted request writes. The message log counts its rows
        waiting to be chained too (PostgreSQL chains them in a background linker)."""
        counted = {
            "outbox": store_tables.outbox, "log": store_tables.message_log,
            "log_pending": store_tables.log_pending, "timeline": store_tables.timeline,
            "idempotency": intake_tables.idempotency, "dossiers": intake_tables.dossiers,
        }
        # One statement, one snapshot: the linker moves rows between the two log tables.
        query = select(*(select(func.count()).select_from(t).scalar_subquery().label(name)
                         for name, t in counted.items()))
        with self.store.engine.connect() as conn:
            rows = dict(conn.execute(query).one()._mapping)
        rows["log"] += rows.pop("log_pending")
        return rows

    def outbox_headers(self, message_id: str) -> dict[str, Any]:
        with self.store.engine.connect() as conn:
            headers = conn.execute(select(store_tables.outbox.c.headers).where(
                store_tables.outbox.c.message_id == message_id)).scalar_one()
        assert isinstance(headers, dict)
        return headers

    def zeep(self, version: str, *, signer: Identity | str | None = "client",
             api_key: str | None = API_KEY, plugin: type[SigningPlugin] = SigningPlugin,
             verify_responses: bool = True) -> tuple[Any, RecordingTransport, HistoryPlugin]:
        session = requests.Session()
        if api_key is not None:
            session.headers["X-API-Key"] = api_key
        transport = RecordingTransport(  # type: ignore[no-untyped-call]
            session=session, cache=self.cache)
        history = HistoryPlugin()  # type: ignore[no-untyped-call]
        plugins: list[Any] = [history]
        km = self.keys.client if signer == "client" else signer
        if isinstance(km, Identity):
            hub_cert = self.keys.hub_soap.cert if verify_responses else None
            plugins.insert(0, plugin(km.key, km.cert,
                                     hub_certificate=hub_cert))
        client = zeep.Client(  # type: ignore[no-untyped-call]
            f"{self.url}?wsdl", transport=transport, plugins=plugins)
        return client.bind("IntakeService", PORTS[version]), transport, history


def _app(settings: Settings, store: Store, keys: Keys, trust: TrustStore,
         registry: ClientRegistry) -> FastAPI:
    intake = IntakeService(store, Signer(keys.hub.key, keys.hub.cert, relay=True), settings)
    app = FastAPI()
    app.include_router(soap.router(
        settings, intake, registry, trust=trust,
        signer=hub_signer(keys)))
    return app


def hub_signer(keys: Keys) -> ResponseSigner:
    assert isinstance(keys.hub_soap.key, rsa.RSAPrivateKey)
    return ResponseSigner(keys.hub_soap.key, keys.hub_soap.cert)


def _registry() -> ClientRegistry:
    return ClientRegistry.from_dict({"clients": [
        {"system_id": CLIENT, "name": "iGate Thanh Hóa", "allowed_types": ["vn.gov.dossier.*"],
         "allowed_agencies": ["000.00.00.H56"], "api_key_sha256": [sha256_hex(API_KEY)]},
        {"system_id": OTHER, "name": "DVC Nghệ An", "allowed_types": ["vn.gov.dossier.*"],
         "allowed_agencies": ["000.00.00.H41"], "api_key_sha256": [sha256_hex(OTHER_KEY)]},
    ]})


def _trust(directory: Path, keys: Keys) -> TrustStore:
    trust = TrustStore(directory)
    trust.add(keys.client.pem)
    trust.add(keys.other.pem)
    return trust


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        keys: Keys) -> Iterator[Hub]:
    tmp = tmp_path_factory.mktemp(f"soap-{request.param}")
    settings = Settings(data_dir=tmp, hub_id=HUB_ID, max_body_bytes=64 * 1024)
    with contextlib.ExitStack() as stack:
        store = open_store(request, tmp, stack)
        app = _app(settings, store, keys, _trust(tmp / "trust", keys), _registry())
        base = stack.enter_context(_Server(app))
        yield Hub(base, store, keys, settings)


# -- the contract over HTTP ------------------------------------------------------------------


def test_wsdl_and_xsd_are_served(hub: Hub) -> None:
    for query in ("wsdl", "WSDL"):
        response = httpx.get(f"{hub.url}?{query}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/xml")
        doc = etree.fromstring(response.content)
        locations = doc.xpath("//*[local-name()='address']/@location")
        assert locations == [hub.url, hub.url]
        imports = doc.xpath("//*[local-name()='import']/@schemaLocation")
        assert imports == [f"{hub.url}?xsd={XSD_NAME}"]
    xsd = httpx.get(f"{hub.url}?xsd={XSD_NAME}")
    assert xsd.status_code == 200
    assert etree.fromstring(xsd.content).get("targetNamespace") == NS
    assert httpx.get(f"{hub.url}?xsd=other.xsd").status_code == 404
    plain = httpx.get(hub.url)
    assert plain.status_code == 405 and "?wsdl" in plain.text


def test_the_wsdl_address_ignores_the_host_header(hub: Hub) -> None:
    # No public_url configured: the address the connection arrived on, whatever the client
    # wrote in Host (test_soap_limits checks a configured public_url on a real server).
    response = httpx.get(f"{hub.url}?wsdl", headers={"Host": "attacker.example"})
    doc = etree.fromstring(response.content)
    assert set(doc.xpath("//*[local-name()='address']/@location")) == {hub.url}
    assert b"attacker.example" not in response.content


# -- every operation, both versions ----------------------------------------------------------


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_every_operation(hub: Hub, version: str) -> None:
    service, transport, history = hub.zeep(version)
    before = hub.rows()
    code = new_dossier_code()

    submitted = service.SubmitDossier(createdAt=now(), dossier=dossier(code))
    assert UUID_RE.match(submitted.messageId) and submitted.duplicate is False
    assert transport.last_status == 200
    assert transport.last_content_type.startswith(VERSIONS[version].media_type)
    assert history.last_sent is not None and history.last_received is not None
    sent = history.last_sent["envelope"]
    assert sent.tag == VERSIONS[version].tag("Envelope")
    received = history.last_received["envelope"]
    assert received.tag == VERSIONS[version].tag("Envelope")
    response = received.find(f".//{{{NS}}}SubmitDossierResponse")
    assert response is not None and response[-1].tag == f"{{{DS}}}Signature"

    status = service.ReportStatus(createdAt=now(), statusChange={
        "dossierCode": code, "status": 2, "previousStatus": 1, "at": "2025-03-01T09:00:00",
        "officer": "Trần Thị B"})
    progress = service.ReportProgress(createdAt=now(), progress={
        "dossierCode": code, "officer": "Trần Thị B", "officerTitle": "Chuyên viên",
        "content": "Tiếp nhận hồ sơ", "status": 2, "at": "2025-03-01T09:05:00"})
    ids = [submitted.messageId, status.messageId, progress.messageId]
    assert len(set(ids)) == 3 and not status.duplicate and not progress.duplicate

    after = hub.rows()
    assert after["outbox"] == before["outbox"] + 3
    assert after["timeline"] == before["timeline"] + 3
    assert after["log"] == before["log"] + 3
    timeline = hub.store.timeline(code)
    assert [e.message_id for e in timeline] == ids
    assert [e.event_type for e in timeline] == [
        "vn.gov.dossier.submitted", "vn.gov.dossier.status-changed",
        "vn.gov.dossier.progress-reported"]
    proof = hub.outbox_headers(ids[0])[UPSTREAM_PROOF]
    assert proof.startswith(f"xmldsig;kid={kid_of(hub.keys.client.cert)};digest=")


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_the_client_refuses_a_response_not_signed_by_the_hub(hub: Hub, version: str) -> None:
    service, _, _ = hub.zeep(version)
    plugin = service._client.plugins[0]
    plugin.hub_certificate = hub.keys.other.cert  # expect another signer
    with pytest.raises(SignatureVerificationFailed):
        service.SubmitDossier(createdAt=now(), dossier=dossier())


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_idempotency_key(hub: Hub, version: str) -> None:
    service, _, _ = hub.zeep(version)
    key = f"key-{uuid.uuid4()}"
    body = dossier()
    first = service.SubmitDossier(createdAt=now(), idempotencyKey=key, dossier=body)
    before = hub.rows()
    # Made afresh (another createdAt, another signature), the same key: the same message.
    again = service.SubmitDossier(createdAt=now(), idempotencyKey=key, dossier=body)
    assert (again.messageId, again.duplicate) == (first.messageId, True)
    assert hub.rows() == before
    with pytest.raises(Fault) as info:
        service.SubmitDossier(createdAt=now(), idempotencyKey=key, dossier=dict(body, channel=1))
    _check_fault(info.value, version, "client.idempotency_conflict", "idempotencyKey")
    assert hub.rows() == before


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_the_same_signed_request_again_is_a_duplicate(hub: Hub, version: str) -> None:
    service, _, history = hub.zeep(version)
    first = service.SubmitDossier(createdAt=now(), dossier=dossier())
    wire = etree.tostring(history.last_sent["envelope"])
    headers = dict(history.last_sent["http_headers"], **{"X-API-Key": API_KEY})
    before = hub.rows()
    response = httpx.post(hub.url, content=wire, headers=headers)
    assert response.status_code == 200
    answer = etree.fromstring(response.content)
    assert answer.findtext(f".//{{{NS}}}messageId") == first.messageId
    assert answer.findtext(f".//{{{NS}}}duplicate") == "true"
    assert hub.rows() == before


# -- refusals through zeep -------------------------------------------------------------------


def _check_fault(fault: Fault, version: str, code: str, field: str | None = None) -> None:
    detail = fault.detail
    assert detail is not None
    hub_fault = detail.find(f"{{{NS}}}HubFault")
    assert hub_fault is not None
    assert hub_fault.findtext(f"{{{NS}}}code") == code
    assert hub_fault.findtext(f"{{{NS}}}origin") == "hub"
    if field is not None:
        assert hub_fault.findtext(f"{{{NS}}}field") == field
    if version == "1.1":
        assert fault.code == "soap:Client"
    else:
        assert fault.code == "soap:Sender"
        assert fault.subcodes == [etree.QName(NS, code)]
    assert code in (fault.message or "")


ZEEP_REFUSALS: dict[str, tuple[dict[str, Any], dict[str, Any] | None, str, str | None]] = {
    # name: (zeep client options, dossier changes, code, field)
    "unsigned": ({"signer": None}, None, "client.missing_signature", "Signature"),
    "untrusted key": ({"signer": "rogue"}, None, "client.unknown_key", "Signature"),
    "changed after signing": ({"plugin": TamperingPlugin}, None, "client.bad_signature",
                              "Signature"),
    "signed by another client": ({"signer": "other"}, None, "client.signer_mismatch",
                                 "Signature"),
    "no credentials": ({"api_key": None}, None, "client.unauthenticated", None),
    "wrong credentials": ({"api_key": "nope"}, None, "client.unauthenticated", "X-API-Key"),
    "not a real date": ({}, {"code": "000.00.00.H56-251399-0001"}, "client.bad_code",
                        "dossier/code"),
    "agency not allowed": ({}, {"agencyCode": "000.00.00.H41",
                                "code": "000.00.00.H41-250301-0001"},
                           "client.access_denied", "dossier/agencyCode"),
    # createdAt this many seconds ago: beyond signature_max_age (300 s), or in the future
    # beyond clock_skew (60 s), a signed request is refused (a replay, or a wrong clock).
    "created too long ago": ({"age": 400}, None, "client.stale_message", "createdAt"),
    "created in the future": ({"age": -120}, None, "client.stale_message", "createdAt"),
}


@pytest.mark.parametrize("version", ["1.1", "1.2"])
@pytest.mark.parametrize("case", list(ZEEP_REFUSALS))
def test_refusals_through_zeep(hub: Hub, version: str, case: str) -> None:
    options, changes, code, field_name = ZEEP_REFUSALS[case]
    options = dict(options)
    created = now() - timedelta(seconds=options.pop("age", 0))
    if options.get("signer") in ("rogue", "other"):
        options["signer"] = getattr(hub.keys, options["signer"])
    service, transport, _ = hub.zeep(version, **options)
    before = hub.rows()
    with pytest.raises(Fault) as info:
        service.SubmitDossier(createdAt=created, dossier=dossier(**(changes or {})))
    _check_fault(info.value, version, code, field_name)
    assert transport.last_status == (500 if version == "1.1" else 400)
    assert transport.last_content_type.startswith(VERSIONS[version].media_type)
    assert hub.rows() == before


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_a_transition_the_dossier_cannot_make(hub: Hub, version: str) -> None:
    service, _, _ = hub.zeep(version)
    code = new_dossier_code()
    service.SubmitDossier(createdAt=now(), dossier=dossier(code))
    before = hub.rows()
    with pytest.raises(Fault) as info:
        service.ReportStatus(createdAt=now(), statusChange={
            "dossierCode": code, "status": 10, "at": "2025-03-02T09:00:00"})
    _check_fault(info.value, version, "client.bad_transition", "statusChange/status")
    assert hub.rows() == before


# -- refusals of raw HTTP requests -----------------------------------------------------------


def _envelope(version: SoapVersion, body: str, header: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{version.namespace}">'
            f"{header}<s:Body>{body}</s:Body></s:Envelope>").encode()


STATUS_REQUEST = (f'<lt:ReportStatus xmlns:lt="{NS}"><lt:createdAt>{{created}}</lt:createdAt>'
                  "<lt:statusChange><lt:dossierCode>000.00.00.H56-250301-0001</lt:dossierCode>"
                  "<lt:status>{status}</lt:status><lt:at>2025-03-01T09:00:00</lt:at>"
                  "</lt:statusChange></lt:ReportStatus>")


def status_request(status: int = 2) -> str:
    """A ReportStatus request element made now (its createdAt)."""
    return STATUS_REQUEST.format(status=status, created=now().isoformat())


def _xxe(canary: Path) -> Callable[[SoapVersion], bytes]:
    def make(version: SoapVersion) -> bytes:
        return (f'<?xml version="1.0"?><!DOCTYPE s:Envelope [<!ENTITY x SYSTEM '
                f'"{canary.as_uri()}">]>'.encode() + _envelope(version, f'<lt:ReportStatus '
                f'xmlns:lt="{NS}"><lt:statusChange><lt:dossierCode>&x;</lt:dossierCode>'
                "</lt:statusChange></lt:ReportStatus>").split(b"?>", 1)[1])

    return make


LAUGHS = ('<!DOCTYPE s:Envelope [<!ENTITY a "aaaaaaaaaa">' + "".join(
    f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9)) + "]>")

RAW_REFUSALS: dict[str, tuple[Callable[[SoapVersion], bytes], str, str | None, str]] = {
    # name: (body, code, field, SOAP fault code kind: sender | VersionMismatch | MustUnderstand)
    "malformed XML": (lambda v: _envelope(v, "<lt:ReportStatus>")[:-20], "client.unparseable",
                      None, "sender"),
    "billion laughs": (lambda v: LAUGHS.encode() + _envelope(v, "<x>&j;</x>").split(b"?>")[1],
                       "client.dtd_forbidden", None, "sender"),
    "too deep": (lambda v: _envelope(v, "<a>" * 70 + "</a>" * 70), "client.too_deep", None,
                 "sender"),
    "envelope of another version": (
        lambda v: _envelope(SOAP12 if v is SOAP11 else SOAP11, status_request(2)),
        "client.soap_version_mismatch", "Envelope", "VersionMismatch"),
    "envelope in no SOAP namespace": (
        lambda v: status_request(2).replace("ReportStatus", "Envelope").encode(),
        "client.soap_version_mismatch", "Envelope", "VersionMismatch"),
    "request in a wrong namespace": (
        lambda v: _envelope(v, status_request(2).replace(NS, "urn:other")),
        "client.unknown_operation", "Body", "sender"),
    "unknown request element": (
        lambda v: _envelope(v, f'<lt:DeleteDossier xmlns:lt="{NS}"/>'),
        "client.unknown_operation", "Body", "sender"),
    "two elements in Body": (
        lambda v: _envelope(v, status_request(2) * 2),
        "client.envelope_invalid", "Body", "sender"),
    "schema violation": (
        lambda v: _envelope(v, status_request(11)), "client.schema_invalid",
        "statusChange/status", "sender"),
    "unsigned raw request": (
        lambda v: _envelope(v, status_request(2)), "client.missing_signature",
        "Signature", "sender"),
    "mandatory header": (
        lambda v: _envelope(v, status_request(2),
                            '<s:Header><w:Security xmlns:w="urn:wsse" s:mustUnderstand="1"/>'
                            "</s:Header>"),
        "client.soap_must_understand", "Header", "MustUnderstand"),
}


def _headers(version: SoapVersion, action: str | None = None) -> dict[str, str]:
    headers = {"X-API-Key": API_KEY}
    if version is SOAP11:
        headers["Content-Type"] = "text/xml; charset=utf-8"
        headers["SOAPAction"] = f'"{action}"' if action else '""'
    else:
        headers["Content-Type"] = (f'application/soap+xml; charset=utf-8; action="{action}"'
                                   if action else "application/soap+xml; charset=utf-8")
    return headers


def _raw_fault(response: httpx.Response, version: SoapVersion, code: str, field: str | None,
               kind: str) -> etree._Element:
    assert response.headers["content-type"].startswith(version.media_type)
    root = etree.fromstring(response.content)
    assert root.tag == version.tag("Envelope")
    fault = root.find(f"{version.tag('Body')}/{version.tag('Fault')}")
    assert fault is not None
    expected = version.sender_code if kind == "sender" else kind
    if version is SOAP11:
        assert fault.findtext("faultcode") == f"soap:{expected}"
        assert fault.findtext("faultstring")
        detail = fault.find("detail")
        assert response.status_code == 500
    else:
        assert fault.findtext(f"{version.tag('Code')}/{version.tag('Value')}") == f"soap:{expected}"
        assert fault.findtext(f"{version.tag('Reason')}/{version.tag('Text')}")
        detail = fault.find(version.tag("Detail"))
        assert response.status_code == (400 if kind == "sender" else 500)
    assert detail is not None
    assert detail.findtext(f"{{{NS}}}HubFault/{{{NS}}}code") == code
    assert detail.findtext(f"{{{NS}}}HubFault/{{{NS}}}origin") == "hub"
    assert detail.findtext(f"{{{NS}}}HubFault/{{{NS}}}field") == field
    return root


@pytest.mark.parametrize("version", ["1.1", "1.2"])
@pytest.mark.parametrize("case", list(RAW_REFUSALS))
def test_refusals_of_raw_requests(hub: Hub, version: str, case: str) -> None:
    soap_version = VERSIONS[version]
    make, code, field_name, kind = RAW_REFUSALS[case]
    before = hub.rows()
    response = httpx.post(hub.url, content=make(soap_version), headers=_headers(soap_version))
    _raw_fault(response, soap_version, code, field_name, kind)
    assert hub.rows() == before


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_xxe_is_refused_and_reveals_nothing(hub: Hub, version: str, tmp_path: Path) -> None:
    canary = tmp_path / "secret.txt"
    canary.write_text("CANARY-7f3a")
    soap_version = VERSIONS[version]
    before = hub.rows()
    response = httpx.post(hub.url, content=_xxe(canary)(soap_version),
                          headers=_headers(soap_version))
    _raw_fault(response, soap_version, "client.dtd_forbidden", None, "sender")
    assert b"CANARY" not in response.content
    assert hub.rows() == before


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_a_mismatched_action(hub: Hub, version: str) -> None:
    soap_version = VERSIONS[version]
    before = hub.rows()
    response = httpx.post(hub.url, content=_envelope(soap_version, status_request(2)),
                          headers=_headers(soap_version, f"{NS}:SubmitDossier"))
    field_name = "SOAPAction" if version == "1.1" else "Content-Type"
    _raw_fault(response, soap_version, "client.action_mismatch", field_name, "sender")
    assert hub.rows() == before


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_too_large(hub: Hub, version: str) -> None:
    soap_version = VERSIONS[version]
    padding = "<!--" + "x" * hub.settings.max_body_bytes + "-->"
    body = _envelope(soap_version, status_request(2) + padding)
    before = hub.rows()
    declared = httpx.post(hub.url, content=body, headers=_headers(soap_version))
    _raw_fault(declared, soap_version, "client.body_too_large", "body", "sender")

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while streaming
        for i in range(0, len(body), 8192):
            yield body[i:i + 8192]

    streamed = httpx.post(hub.url, content=chunks(), headers=_headers(soap_version))
    _raw_fault(streamed, soap_version, "client.body_too_large", "body", "sender")
    assert hub.rows() == before


def test_a_content_type_that_is_not_soap(hub: Hub) -> None:
    before = hub.rows()
    response = httpx.post(hub.url, content=_envelope(SOAP11, status_request(2)),
                          headers={"X-API-Key": API_KEY, "Content-Type": "application/json"})
    assert response.status_code == 415
    root = etree.fromstring(response.content)
    assert root.findtext(".//faultcode") == "soap:Client"
    assert root.findtext(f".//{{{NS}}}code") == "client.unsupported_media_type"
    assert hub.rows() == before


# -- stock tools verify both signatures ------------------------------------------------------


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_xmlsec1_verifies_the_request_and_the_response(hub: Hub, version: str,
                                                       tmp_path: Path) -> None:
    xmlsec1 = shutil.which("xmlsec1")
    assert xmlsec1, "xmlsec1 is required: install the Debian package xmlsec1"
    service, _, history = hub.zeep(version)
    service.SubmitDossier(createdAt=now(), dossier=dossier())
    client_pem = tmp_path / "client.pem"
    client_pem.write_bytes(hub.keys.client.pem)
    hub_pem = tmp_path / "hub.pem"
    hub_pem.write_bytes(hub.keys.hub_soap.pem)
    assert history.last_sent is not None and history.last_received is not None
    request_xml = tmp_path / "request.xml"
    request_xml.write_bytes(etree.tostring(history.last_sent["envelope"]))
    response_xml = tmp_path / "response.xml"
    response_xml.write_bytes(etree.tostring(history.last_received["envelope"]))

    def verify(path: Path, element: str, pem: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [xmlsec1, "--verify", "--id-attr:Id", f"{NS}:{element}", "--trusted-pem", str(pem),
             str(path)], capture_output=True, text=True, timeout=30)

    done = verify(request_xml, "SubmitDossier", client_pem)
    assert done.returncode == 0 and "OK" in done.stderr, done.stderr
    done = verify(response_xml, "SubmitDossierResponse", hub_pem)
    assert done.returncode == 0 and "OK" in done.stderr, done.stderr
    # xmlsec1 really checks: the wrong signer, or a changed answer, fail.
    assert verify(response_xml, "SubmitDossierResponse", client_pem).returncode != 0
    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(response_xml.read_bytes().replace(b">false<", b">true<"))
    assert verify(tampered, "SubmitDossierResponse", hub_pem).returncode != 0


# -- the pipeline's own failures -------------------------------------------------------------


def test_concurrent_requests(hub: Hub) -> None:
    """Requests handled at once in the worker threads: each gets its own answer."""
    service, _, _ = hub.zeep("1.1")
    bodies = [dossier() for _ in range(12)]
    results: list[str] = []
    errors: list[BaseException] = []

    def call(body: dict[str, Any]) -> None:
        try:
            results.append(service.SubmitDossier(createdAt=now(), dossier=body).messageId)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(results)) == 12


def test_mounted_in_the_hub_app(tmp_path: Path, keys: Keys) -> None:
    """The router inside the REST app (its middlewares, its problem handlers)."""
    from hub.api.app import create_app

    settings = Settings(data_dir=tmp_path, hub_id=HUB_ID)
    store = Store.open(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        registry = _registry()
        app = create_app(settings, store=store, registry=registry, relay=False,
                         signer=Signer(keys.hub.key, keys.hub.cert, relay=True))
        if not any(getattr(r, "path", None) == soap.PATH for r in app.routes):
            app.include_router(soap.router(
                settings, app.state.hub.intake, registry, trust=_trust(tmp_path / "t", keys),
                limiter=app.state.hub.limiter,
                signer=hub_signer(keys)))
        with _Server(app) as base:
            hub = Hub(base, store, keys, settings)
            for version in ("1.1", "1.2"):
                service, _, _ = hub.zeep(version)
                answer = service.SubmitDossier(createdAt=now(), dossier=dossier())
                assert UUID_RE.match(answer.messageId)
                with pytest.raises(Fault) as info:
                    hub.zeep(version, signer=None)[0].SubmitDossier(createdAt=now(),
                                                                    dossier=dossier())
                _check_fault(info.value, version, "client.missing_signature")
    finally:
        store.close()




def test_too_large_through_the_hub_app_is_a_fault(tmp_path: Path, keys: Keys) -> None:
    from hub.api.app import create_app

    settings = Settings(data_dir=tmp_path, hub_id=HUB_ID, max_body_bytes=10_000)
    store = Store.open(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        registry = _registry()
        app = create_app(settings, store=store, registry=registry, relay=False,
                         signer=Signer(keys.hub.key, keys.hub.cert, relay=True))
        if not any(getattr(r, "path", None) == soap.PATH for r in app.routes):
            app.include_router(soap.router(
                settings, app.state.hub.intake, registry, trust=_trust(tmp_path / "t", keys),
                signer=hub_signer(keys)))
        with _Server(app) as base:
            body = _envelope(SOAP11, status_request(2) + "<!--" + "x" * 20_000
                             + "-->")
            response = httpx.post(f"{base}{soap.PATH}", content=body, headers=_headers(SOAP11))
            _raw_fault(response, SOAP11, "client.body_too_large", "body", "sender")
    finally:
        store.close()

# -- failures of the hub itself --------------------------------------------------------------


class _Intake:
    """An intake that fails as told, or waits until released (the store is pure logic here)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.release = threading.Event()
        self.calls = 0

    def accept(self, client: Any, event_type: str, data: dict[str, Any], *,
               idempotency_key: str | None, upstream_proof: str | None) -> Any:
        self.calls += 1
        if self.error is not None:
            raise self.error
        self.release.wait(timeout=30)
        raise RetryableError("released", code="server.store_unavailable")


def _signed_request(keys: Keys, version: SoapVersion) -> bytes:
    element = etree.fromstring(status_request(2).encode())
    signed = sign_element(element, keys.client.key,
                          keys.client.cert, element_id="request")
    return _envelope(version, etree.tostring(signed).decode())


@pytest.fixture
def lone_service(tmp_path: Path, keys: Keys) -> Callable[[Any], soap.SoapService]:
    def make(intake: Any) -> soap.SoapService:
        settings = Settings(data_dir=tmp_path)
        return soap.SoapService(
            contract=Contract(settings.schemas_dir / "soap"), intake=intake,
            registry=_registry(), verifier=RequestVerifier(_trust(tmp_path / "trust", keys)),
            window=AgeWindow.from_settings(settings), signer=hub_signer(keys),
            max_body_bytes=settings.max_body_bytes)

    return make


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_an_unexpected_failure_is_a_receiver_fault(
        lone_service: Callable[[Any], soap.SoapService], keys: Keys, version: str,
        caplog: pytest.LogCaptureFixture) -> None:
    soap_version = VERSIONS[version]
    intake = _Intake(RuntimeError("disk on fire"))
    reply = lone_service(intake).handle(
        {k.lower(): v for k, v in _headers(soap_version).items()},
        _signed_request(keys, soap_version))
    assert intake.calls == 1
    assert reply.status == 500 and reply.content_type.startswith(soap_version.media_type)
    root = etree.fromstring(reply.body)
    assert root.findtext(f".//{{{NS}}}code") == "server.internal"
    assert b"disk on fire" not in reply.body  # internals stay in the log
    assert "disk on fire" in caplog.text
    code = (root.findtext(".//faultcode") if version == "1.1" else
            root.findtext(f".//{soap_version.tag('Code')}/{soap_version.tag('Value')}"))
    assert code == f"soap:{soap_version.receiver_code}"


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_a_store_outage_is_a_receiver_fault(
        lone_service: Callable[[Any], soap.SoapService], keys: Keys, version: str) -> None:
    soap_version = VERSIONS[version]
    service = lone_service(_Intake(RetryableError("the store is down",
                                                  code="server.store_unavailable")))
    reply = service.handle({k.lower(): v for k, v in _headers(soap_version).items()},
                           _signed_request(keys, soap_version))
    assert reply.status == 500
    root = etree.fromstring(reply.body)
    assert root.findtext(f".//{{{NS}}}code") == "server.store_unavailable"
    assert root.findtext(f".//{{{NS}}}message") == "the store is down"


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_a_request_that_takes_too_long(tmp_path: Path, keys: Keys, version: str) -> None:
    soap_version = VERSIONS[version]
    settings = Settings(data_dir=tmp_path, hub_id=HUB_ID, request_timeout=0.3)
    intake = _Intake()
    app = FastAPI()
    app.include_router(soap.router(
        settings, intake, _registry(), trust=_trust(tmp_path / "trust", keys),
        signer=hub_signer(keys)))
    try:
        with _Server(app) as base:
            response = httpx.post(f"{base}{soap.PATH}", content=_signed_request(keys, soap_version),
                                  headers=_headers(soap_version), timeout=10)
            _raw_fault(response, soap_version, "server.timeout", None, soap_version.receiver_code)
    finally:
        intake.release.set()


class _OkIntake:
    def accept(self, client: Any, event_type: str, data: dict[str, Any], *,
               idempotency_key: str | None, upstream_proof: str | None) -> Accepted:
        return Accepted(str(uuid.uuid4()), duplicate=False)


@pytest.mark.parametrize(("inline_max_bytes", "in_loop"), [(0, False), (1 << 20, True)])
def test_where_requests_are_checked(lone_service: Callable[[Any], soap.SoapService],
                                    keys: Keys, inline_max_bytes: int, in_loop: bool) -> None:
    """Small requests on the event loop, large ones in a worker thread; both answered."""
    service = lone_service(_OkIntake())
    threads: list[str] = []
    prepare = service.prepare

    def recording(headers: Any, body: bytes) -> Any:
        threads.append(threading.current_thread().name)
        return prepare(headers, body)

    service.prepare = recording  # type: ignore[method-assign]
    app = FastAPI()
    app.include_router(build_router(service, path=soap.PATH, timeout=10,
                                    inline_max_bytes=inline_max_bytes))
    with _Server(app) as base:
        response = httpx.post(f"{base}{soap.PATH}", content=_signed_request(keys, SOAP12),
                              headers=_headers(SOAP12))
    assert response.status_code == 200, response.text
    assert etree.fromstring(response.content).findtext(f".//{{{NS}}}duplicate") == "false"
    assert len(threads) == 1
    assert threads[0].startswith("AnyIO worker") is not in_loop


def test_faults_keep_what_was_sent_out_of_the_log(
        lone_service: Callable[[Any], soap.SoapService], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    identity_number = "0380900012345"  # 13 digits: refused by the XSD, quoted in the fault
    body = _envelope(SOAP11, (
        f'<lt:SubmitDossier xmlns:lt="{NS}"><lt:createdAt>{now().isoformat()}</lt:createdAt>'
        "<lt:dossier><lt:code>000.00.00.H56-250301-0001"
        "</lt:code><lt:procedureCode>2.002492</lt:procedureCode><lt:agencyCode>000.00.00.H56"
        f"</lt:agencyCode><lt:applicant><lt:identityNumber>{identity_number}</lt:identityNumber>"
        "<lt:name>A</lt:name></lt:applicant><lt:channel>1</lt:channel></lt:dossier>"
        "</lt:SubmitDossier>"))
    reply = lone_service(_OkIntake()).handle(
        {k.lower(): v for k, v in _headers(SOAP11).items()}, body)
    assert reply.status == 500
    # The sender is told what was wrong, with the number masked as everywhere (hub.privacy).
    assert b"client.schema_invalid" in reply.body and b"0380*******45" in reply.body
    assert identity_number.encode() not in reply.body
    assert "client.schema_invalid" in caplog.text
    assert identity_number not in caplog.text
