"""The SOAP entry point's rate limit and certificate-header check, in the hub's own app (shared
limiter, RequestPeer) behind a real uvicorn socket: a rate-limited request is a fault zeep
reads, in each version's status, with Retry-After; a certificate header is honoured only from
a trusted TLS terminator."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import uvicorn
import zeep
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from lxml import etree
from zeep.exceptions import Fault
from zeep.transports import Transport

from hub.api import soap
from hub.api.app import create_app
from hub.api.auth import ClientRegistry, sha256_hex
from hub.api.errors import RateLimited, RequestTimeout
from hub.api.soap.contract import NS
from hub.api.soap.dsig import ResponseSigner
from hub.api.soap.envelope import SOAP11, SOAP12, SoapVersion
from hub.api.soap.faults import fault_headers
from hub.settings import Settings
from hub.signing import Signer, generate
from hub.store import Store
from hub.testing.waiting import wait_for

HUB_ID = "VN:GOV:000.00.00.G22:lienthong"
CLIENT = "VN:GOV:000.00.00.H56:igate"
API_KEY = "soap-limits-key-igate"
CERT = "ab" * 32
VERSIONS = {"1.1": SOAP11, "1.2": SOAP12}
PORTS = {"1.1": "IntakeSoap11", "1.2": "IntakeSoap12"}
# Statuses of a Sender fault (faults.py explains why a rate limit keeps them, not 429).
SENDER_STATUS = {"1.1": 500, "1.2": 400}


class KeepingTransport(Transport):
    """Keeps the last HTTP answer: zeep's Fault has neither its status nor its headers."""

    last: requests.Response | None = None

    def post_xml(self, address: str, envelope: Any, headers: Any) -> requests.Response:
        response: requests.Response = super().post_xml(  # type: ignore[no-untyped-call]
            address, envelope, headers)
        self.last = response
        return response


@dataclass
class Hub:
    base: str

    @property
    def url(self) -> str:
        return f"{self.base}{soap.PATH}"

    def raw(self, version: SoapVersion, headers: dict[str, str] | None = None) -> httpx.Response:
        """A request that is no SOAP envelope: refused, but only after authentication and the
        rate limit, which it goes through (a token taken)."""
        return httpx.post(self.url, content=b"<not-soap/>", headers={
            "Content-Type": version.content_type, "SOAPAction": '""',
            "X-API-Key": API_KEY, **(headers or {})})


class _Server:
    def __init__(self, app: FastAPI) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        port = self.sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def __enter__(self) -> Hub:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=20, message="uvicorn to start")
        return Hub(self.base)

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


@pytest.fixture(scope="module")
def signers() -> tuple[Signer, ResponseSigner]:
    jws = generate(HUB_ID, "ES256")
    rsa_key = generate(soap.response_signer_id(Settings(hub_id=HUB_ID)), "RS256")
    assert jws.certificate is not None and rsa_key.certificate is not None
    assert isinstance(rsa_key.private_key, rsa.RSAPrivateKey)
    return (Signer(jws.private_key, jws.certificate, relay=True),
            ResponseSigner(rsa_key.private_key, rsa_key.certificate))


def serve(tmp_path: Path, signers: tuple[Signer, ResponseSigner],
          **changes: Any) -> Iterator[Hub]:
    settings = Settings(data_dir=tmp_path, hub_id=HUB_ID, name_prefix=f"lt{uuid.uuid4().hex[:8]}",
                        **changes)
    registry = ClientRegistry.from_dict({"clients": [{
        "system_id": CLIENT, "name": "iGate Thanh Hóa", "allowed_types": ["vn.gov.dossier.*"],
        "allowed_agencies": ["000.00.00.H56*"], "api_key_sha256": [sha256_hex(API_KEY)],
        "cert_sha256": [CERT]}]})
    store = Store.open(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        app = create_app(settings, store=store, signer=signers[0], registry=registry,
                         relay=False, adapters={}, soap=True, soap_signer=signers[1])
        with _Server(app) as hub:
            yield hub
    finally:
        store.close()


@pytest.fixture
def limited(tmp_path: Path, signers: tuple[Signer, ResponseSigner]) -> Iterator[Hub]:
    # A burst of one, then ten seconds to the next: none refills during a test.
    yield from serve(tmp_path, signers, rate_per_client=0.1)


def _hub_fault(body: bytes) -> etree._Element:
    found = etree.fromstring(body).find(f".//{{{NS}}}HubFault")
    assert found is not None, body
    return found


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_a_rate_limited_request_is_a_fault_with_retry_after(limited: Hub, version: str) -> None:
    soap_version = VERSIONS[version]
    first = limited.raw(soap_version)
    assert _hub_fault(first.content).findtext(f"{{{NS}}}code") != "client.rate_limited"

    session = requests.Session()
    session.headers["X-API-Key"] = API_KEY
    transport = KeepingTransport(session=session)  # type: ignore[no-untyped-call]
    client = zeep.Client(f"{limited.url}?wsdl", transport=transport)  # type: ignore[no-untyped-call]
    service = client.bind("IntakeService", PORTS[version])
    dossier = {"code": "000.00.00.H56-250301-0001", "procedureCode": "2.002492",
               "agencyCode": "000.00.00.H56",
               "applicant": {"identityNumber": "038090001234", "name": "Nguyễn Văn An"},
               "channel": 2}
    with pytest.raises(Fault) as info:
        service.SubmitDossier(createdAt=datetime.now(UTC), dossier=dossier)
    fault = info.value
    # zeep reads the fault: the hub's code, in the version's form.
    assert fault.detail is not None
    assert fault.detail.find(f"{{{NS}}}HubFault").findtext(f"{{{NS}}}code") == (
        "client.rate_limited")
    assert "see Retry-After" in (fault.message or "")
    if version == "1.1":
        assert fault.code == "soap:Client"
    else:
        assert fault.code == "soap:Sender"
        assert fault.subcodes == [etree.QName(NS, "client.rate_limited")]
    answer = transport.last
    assert answer is not None
    assert answer.status_code == SENDER_STATUS[version]
    assert answer.headers["content-type"].startswith(soap_version.media_type)
    # The wait in whole seconds: up to ten at a tenth of a request per second.
    assert 1 <= int(answer.headers["retry-after"]) <= 10

    # Raw, the same: status, header, and the fault in the announced version.
    again = limited.raw(soap_version)
    assert again.status_code == SENDER_STATUS[version]
    assert 1 <= int(again.headers["retry-after"]) <= 10
    assert _hub_fault(again.content).findtext(f"{{{NS}}}code") == "client.rate_limited"


def test_retry_after_is_rounded_up() -> None:
    for wait, header in ((0.01, b"1"), (1.0, b"1"), (1.2, b"2"), (59.5, b"60")):
        assert fault_headers(RateLimited("slow down", retry_after=wait)) == (
            (b"retry-after", header),)
    assert fault_headers(RequestTimeout("late")) == ()


def test_other_faults_have_no_retry_after(limited: Hub) -> None:
    answer = httpx.post(limited.url, content=b"<not-soap/>", headers={
        "Content-Type": SOAP11.content_type, "SOAPAction": '""'})  # no credentials
    assert _hub_fault(answer.content).findtext(f"{{{NS}}}code") == "client.unauthenticated"
    assert "retry-after" not in answer.headers


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_the_certificate_header_from_loopback_is_honoured(
        tmp_path: Path, signers: tuple[Signer, ResponseSigner], version: str) -> None:
    # Default trusted_proxies: loopback, where this test's connections come from.
    for hub in serve(tmp_path, signers):
        answer = hub.raw(VERSIONS[version], {"X-Client-Cert-SHA256": CERT})
        # Past authentication (the key and the certificate both name the client): refused
        # only for the body.
        code = _hub_fault(answer.content).findtext(f"{{{NS}}}code")
        assert code not in (None, "client.unauthenticated"), answer.text


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_the_certificate_header_from_an_untrusted_peer_is_a_fault(
        tmp_path: Path, signers: tuple[Signer, ResponseSigner], version: str) -> None:
    # The terminator is elsewhere: a connection from loopback is not it.
    for hub in serve(tmp_path, signers, trusted_proxies=["192.0.2.1"]):
        answer = hub.raw(VERSIONS[version], {"X-Client-Cert-SHA256": CERT})
        assert answer.status_code == SENDER_STATUS[version]
        fault = _hub_fault(answer.content)
        assert fault.findtext(f"{{{NS}}}code") == "client.unauthenticated"
        assert fault.findtext(f"{{{NS}}}field") == "X-Client-Cert-SHA256"
        message = fault.findtext(f"{{{NS}}}message") or ""
        assert "came from 127.0.0.1" in message and "trusted_proxies" in message
        # Without the header the same client is let in (as far as authentication goes).
        plain = _hub_fault(hub.raw(VERSIONS[version]).content)
        assert plain.findtext(f"{{{NS}}}code") != "client.unauthenticated"
