"""Signed SOAP requests cannot be replayed: the signed ``createdAt`` against the age window
(hub.api.soap.freshness), the same signed request within the window answered as a
resubmission however it travels, another idempotencyKey no way to make it new, and
``lienthong store prune`` never forgetting a resend's idempotency key inside that window. The
real intake and store (SQLite and PostgreSQL); the age window's clock is the test's."""

from __future__ import annotations

import contextlib
import itertools
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import open_store
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from lxml import etree
from sqlalchemy import func, select
from typer.testing import CliRunner

from hub.api import soap
from hub.api.auth import ClientRegistry, sha256_hex
from hub.api.soap.contract import NS, Contract
from hub.api.soap.dsig import RequestVerifier, ResponseSigner, sign_element
from hub.api.soap.envelope import SOAP11, SOAP12, SoapVersion
from hub.api.soap.freshness import AgeWindow
from hub.api.soap.service import SoapService
from hub.cli.store import app as store_cli
from hub.cli.store import idempotency_window
from hub.intake.service import IntakeService
from hub.settings import Settings
from hub.signing import Signer, TrustStore, generate
from hub.signing.keys import KeyMaterial
from hub.store import Store
from hub.store import tables as store_tables

HUB_ID = "VN:GOV:000.00.00.G22:lienthong"
CLIENT = "VN:GOV:000.00.00.H56:igate"
API_KEY = "freshness-test-key"
MAX_AGE, SKEW = 300.0, 60.0
VERSIONS = {"1.1": SOAP11, "1.2": SOAP12}
_numbers = itertools.count(1)


@dataclass(frozen=True)
class Keys:
    client: KeyMaterial
    hub: KeyMaterial  # JWS (the intake signs events as a relay)
    hub_soap: KeyMaterial  # RSA, the SOAP answers


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(generate(CLIENT, "RS256"), generate(HUB_ID, "ES256"),
                generate(soap.response_signer_id(Settings(hub_id=HUB_ID)), "RS256"))


class Clock:
    """The age window's clock: real time, moved on by the test."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Hub:
    service: SoapService
    store: Store
    clock: Clock
    keys: Keys

    def outbox_rows(self, message_id: str | None = None) -> int:
        query = select(func.count()).select_from(store_tables.outbox)
        if message_id is not None:
            query = query.where(store_tables.outbox.c.message_id == message_id)
        with self.store.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def send(self, body: bytes, version: SoapVersion = SOAP11) -> etree._Element:
        """The answer's envelope: the signed response, or a fault."""
        reply = self.service.handle(_headers(version), body)
        assert reply.content_type.startswith(version.media_type)
        root = etree.fromstring(reply.body)
        fault = root.find(f"{version.tag('Body')}/{version.tag('Fault')}")
        assert reply.status == (200 if fault is None else 500 if version is SOAP11 else 400)
        return root


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        keys: Keys) -> Iterator[Hub]:
    tmp = tmp_path_factory.mktemp(f"fresh-{request.param}")
    settings = Settings(data_dir=tmp, hub_id=HUB_ID, signature_max_age=MAX_AGE,
                        clock_skew=SKEW)
    with contextlib.ExitStack() as stack:
        store = open_store(request, tmp, stack)
        hub_key = keys.hub.private_key
        assert keys.hub.certificate is not None
        intake = IntakeService(store, Signer(hub_key, keys.hub.certificate, relay=True),
                               settings)
        stack.callback(intake.close)
        trust = TrustStore(tmp / "trust")
        trust.add(keys.client.certificate_pem())
        soap_key = keys.hub_soap.private_key
        assert isinstance(soap_key, rsa.RSAPrivateKey) and keys.hub_soap.certificate
        clock = Clock()
        service = SoapService(
            contract=Contract(settings.schemas_dir / "soap"), intake=intake,
            registry=ClientRegistry.from_dict({"clients": [{
                "system_id": CLIENT, "name": "iGate", "allowed_types": ["vn.gov.dossier.*"],
                "allowed_agencies": ["000.00.00.H56"], "api_key_sha256": [sha256_hex(API_KEY)],
            }]}),
            verifier=RequestVerifier(trust),
            window=AgeWindow.from_settings(settings, clock=clock),
            signer=ResponseSigner(soap_key, keys.hub_soap.certificate),
            max_body_bytes=settings.max_body_bytes)
        yield Hub(service, store, clock, keys)


def _headers(version: SoapVersion) -> dict[str, str]:
    if version is SOAP11:
        return {"x-api-key": API_KEY, "content-type": "text/xml; charset=utf-8",
                "soapaction": '""'}
    return {"x-api-key": API_KEY, "content-type": "application/soap+xml; charset=utf-8"}


def submit_dossier(created: str | None) -> str:
    """A SubmitDossier request element for a new dossier; ``created`` is its createdAt text
    (None: left out)."""
    n = next(_numbers)
    created_at = "" if created is None else f"<lt:createdAt>{created}</lt:createdAt>"
    return (f'<lt:SubmitDossier xmlns:lt="{NS}">{created_at}<lt:dossier>'
            f"<lt:code>000.00.00.H56-250301-{n:04d}</lt:code>"
            "<lt:procedureCode>2.002492</lt:procedureCode><lt:agencyCode>000.00.00.H56"
            "</lt:agencyCode><lt:applicant><lt:identityNumber>038090001234</lt:identityNumber>"
            "<lt:name>Nguyễn Văn An</lt:name></lt:applicant><lt:channel>2</lt:channel>"
            "</lt:dossier></lt:SubmitDossier>")


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


def envelope(version: SoapVersion, element: bytes) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{version.namespace}">'
            "<s:Body>").encode() + element + b"</s:Body></s:Envelope>"


def signed(keys: Keys, xml: str, version: SoapVersion = SOAP11) -> bytes:
    element = etree.fromstring(xml.encode())
    key = keys.client.private_key
    assert isinstance(key, rsa.RSAPrivateKey) and keys.client.certificate is not None
    sign_element(element, key, keys.client.certificate, element_id="request")
    return envelope(version, etree.tostring(element))


def answer(root: etree._Element) -> tuple[str, str]:
    """(messageId, duplicate) of a signed response."""
    message_id = root.findtext(f".//{{{NS}}}messageId")
    duplicate = root.findtext(f".//{{{NS}}}duplicate")
    assert message_id and duplicate, etree.tostring(root)
    return message_id, duplicate


def fault(root: etree._Element) -> dict[str, Any]:
    detail = root.find(f".//{{{NS}}}HubFault")
    assert detail is not None, etree.tostring(root)
    return {name: detail.findtext(f"{{{NS}}}{name}") for name in ("code", "field", "message")}


# -- the age window --------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_a_request_older_than_the_window_is_stale(hub: Hub, version: str) -> None:
    soap_version = VERSIONS[version]
    before = hub.outbox_rows()
    refused = fault(hub.send(signed(hub.keys, submit_dossier(ago(MAX_AGE + 5)), soap_version),
                             soap_version))
    assert refused["code"] == "client.stale_message" and refused["field"] == "createdAt"
    assert "s ago" in refused["message"] and "afresh" in refused["message"]
    assert hub.outbox_rows() == before
    # Just inside the window: kept.
    message_id, duplicate = answer(hub.send(
        signed(hub.keys, submit_dossier(ago(MAX_AGE - 20)), soap_version), soap_version))
    assert duplicate == "false" and hub.outbox_rows(message_id) == 1


def test_a_request_from_the_future_beyond_the_clock_skew_is_refused(hub: Hub) -> None:
    before = hub.outbox_rows()
    refused = fault(hub.send(signed(hub.keys, submit_dossier(ago(-(SKEW + 10))))))
    assert refused["code"] == "client.stale_message" and refused["field"] == "createdAt"
    assert "in the future" in refused["message"] and "clock" in refused["message"]
    assert hub.outbox_rows() == before
    # Within the skew (a sender's clock a little ahead): kept.
    message_id, _ = answer(hub.send(signed(hub.keys, submit_dossier(ago(-(SKEW - 20))))))
    assert hub.outbox_rows(message_id) == 1


@pytest.mark.parametrize(("created", "problem"), [
    (None, "has no createdAt"),
    ("2025-03-01T08:00:00", "pattern"),  # no time zone
    ("soon", "not a valid value"),
])
def test_a_missing_or_unreadable_created_at_is_refused(hub: Hub, created: str | None,
                                                       problem: str) -> None:
    before = hub.outbox_rows()
    refused = fault(hub.send(signed(hub.keys, submit_dossier(created))))
    assert refused["code"] == "client.schema_invalid" and refused["field"] == "createdAt"
    assert problem in refused["message"]
    assert hub.outbox_rows() == before


def test_created_at_in_another_time_zone_is_the_same_instant(hub: Hub) -> None:
    local = (datetime.now(UTC) - timedelta(seconds=10)).astimezone().isoformat()
    assert answer(hub.send(signed(hub.keys, submit_dossier(local))))[1] == "false"


def test_a_refreshed_created_at_breaks_the_signature(hub: Hub) -> None:
    """A replay cannot be made fresh: createdAt is signed content."""
    old = ago(MAX_AGE + 60)
    body = signed(hub.keys, submit_dossier(old))
    before = hub.outbox_rows()
    refreshed = body.replace(old.encode(), datetime.now(UTC).isoformat().encode())
    assert fault(hub.send(refreshed))["code"] == "client.bad_signature"
    assert fault(hub.send(body))["code"] == "client.stale_message"
    assert hub.outbox_rows() == before


# -- resends -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_the_same_request_within_the_window_is_a_resubmission(hub: Hub, version: str) -> None:
    soap_version = VERSIONS[version]
    body = signed(hub.keys, submit_dossier(ago(1)), soap_version)
    first, duplicate = answer(hub.send(body, soap_version))
    assert duplicate == "false"
    before = hub.outbox_rows()
    hub.clock.offset = MAX_AGE - 30  # later, still inside the window
    try:
        assert answer(hub.send(body, soap_version)) == (first, "true")
    finally:
        hub.clock.offset = 0.0
    assert hub.outbox_rows(first) == 1 and hub.outbox_rows() == before


def test_after_the_window_the_same_request_is_stale_even_once_its_key_is_pruned(
        hub: Hub) -> None:
    body = signed(hub.keys, submit_dossier(ago(1)))
    first, _ = answer(hub.send(body))
    hub.clock.offset = MAX_AGE + 1
    try:
        # The key is still known, the age alone refuses it ...
        assert fault(hub.send(body))["code"] == "client.stale_message"
        # ... and once every key is forgotten, still refused: not taken for a new event.
        assert hub.store.idempotency_prune(datetime.now(UTC) + timedelta(seconds=1)) > 0
        refused = fault(hub.send(body))
    finally:
        hub.clock.offset = 0.0
    assert refused["code"] == "client.stale_message" and refused["field"] == "createdAt"
    assert hub.outbox_rows(first) == 1


def test_a_request_made_afresh_with_its_idempotency_key_is_a_resubmission(hub: Hub) -> None:
    """What a client does after the window: a new createdAt, signed again, the same key."""
    key = f"k-{next(_numbers)}"
    first_xml = submit_dossier(ago(MAX_AGE - 10)).replace(
        "<lt:createdAt>", f"<lt:idempotencyKey>{key}</lt:idempotencyKey><lt:createdAt>")
    first, _ = answer(hub.send(signed(hub.keys, first_xml)))
    again_xml = first_xml.replace(first_xml.split("<lt:createdAt>")[1].split("<")[0],
                                  datetime.now(UTC).isoformat())
    assert answer(hub.send(signed(hub.keys, again_xml))) == (first, "true")
    assert hub.outbox_rows(first) == 1


def with_key(xml: str, key: str) -> str:
    return xml.replace("<lt:createdAt>",
                       f"<lt:idempotencyKey>{key}</lt:idempotencyKey><lt:createdAt>")


def signed_element(body: bytes) -> bytes:
    """The signed request element of an envelope made by ``envelope``."""
    return body.split(b"<s:Body>", 1)[1].rsplit(b"</s:Body>", 1)[0]


@pytest.mark.parametrize("keyed", [False, True], ids=["no key", "idempotencyKey"])
def test_the_same_signed_request_however_it_travels_is_a_resubmission(hub: Hub,
                                                                      keyed: bool) -> None:
    """What anyone holding a captured request can change without breaking its signature: the
    envelope around the signed element (SOAP 1.2 instead of 1.1, a header added), the
    SignatureValue's spelling (base64 wrapped in lines). The same signed content, so the same
    message: the request's key is its signed idempotencyKey, or the signed content's digest."""
    xml = submit_dossier(ago(1))
    body = signed(hub.keys, with_key(xml, f"k-{next(_numbers)}") if keyed else xml)
    first, duplicate = answer(hub.send(body))
    assert duplicate == "false"
    before = hub.outbox_rows()
    element = signed_element(body)
    start = element.index(b"SignatureValue>") + len(b"SignatureValue>")
    end = element.index(b"</", start)
    value = element[start:end]
    wrapped = b"\n".join(value[i:i + 64] for i in range(0, len(value), 64))
    assert wrapped != value
    respelled = element[:start] + wrapped + element[end:]
    moved = (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP12.namespace}">'
             '<s:Header><x:Trace xmlns:x="urn:example:trace">replayed</x:Trace></s:Header>'
             "<s:Body>").encode() + respelled + b"</s:Body></s:Envelope>"
    assert answer(hub.send(moved, SOAP12)) == (first, "true")
    assert hub.outbox_rows(first) == 1 and hub.outbox_rows() == before


def test_another_idempotency_key_is_another_signed_request(hub: Hub) -> None:
    """Unlike REST's Idempotency-Key header, the SOAP idempotencyKey is inside the signed
    element: a copy of a signed request under another key (or with a key added) is signed
    content its sender never signed, refused by the signature, and nothing is kept."""
    key = f"k-{next(_numbers)}"
    keyed = signed(hub.keys, with_key(submit_dossier(ago(1)), key))
    first, _ = answer(hub.send(keyed))
    keyless = signed(hub.keys, submit_dossier(ago(1)))
    second, _ = answer(hub.send(keyless))
    before = hub.outbox_rows()
    for copy in (keyed.replace(key.encode(), b"k-other"),
                 keyless.replace(b"<lt:createdAt>",
                                 b"<lt:idempotencyKey>k-added</lt:idempotencyKey>"
                                 b"<lt:createdAt>", 1)):
        assert copy != keyed and copy != keyless
        assert fault(hub.send(copy))["code"] == "client.bad_signature"
    assert hub.outbox_rows() == before
    assert hub.outbox_rows(first) == hub.outbox_rows(second) == 1


def test_xmlsec1_signs_a_request_the_hub_accepts(hub: Hub, tmp_path: Path) -> None:
    """A stock tool signing a template (createdAt in it) makes a request the hub keeps."""
    xmlsec1 = shutil.which("xmlsec1")
    assert xmlsec1, "xmlsec1 is required (Debian package xmlsec1)"
    ec14n = "http://www.w3.org/2001/10/xml-exc-c14n#"
    dsig = "http://www.w3.org/2000/09/xmldsig#"
    template = (
        f'<ds:Signature xmlns:ds="{dsig}"><ds:SignedInfo>'
        f'<ds:CanonicalizationMethod Algorithm="{ec14n}"/>'
        '<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>'
        f'<ds:Reference URI="#request"><ds:Transforms>'
        f'<ds:Transform Algorithm="{dsig}enveloped-signature"/>'
        f'<ds:Transform Algorithm="{ec14n}"/></ds:Transforms>'
        '<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
        "<ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo>"
        "<ds:X509Data/></ds:KeyInfo></ds:Signature>")
    xml = submit_dossier(ago(1)).replace("<lt:SubmitDossier ", '<lt:SubmitDossier Id="request" ')
    xml = xml.replace("</lt:SubmitDossier>", template + "</lt:SubmitDossier>")
    (tmp_path / "template.xml").write_bytes(envelope(SOAP12, xml.encode()))
    key = hub.keys.client.private_key
    assert isinstance(key, rsa.RSAPrivateKey)
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    (tmp_path / "cert.pem").write_bytes(hub.keys.client.certificate_pem())
    subprocess.run([xmlsec1, "--sign", "--privkey-pem",
                    f"{tmp_path / 'key.pem'},{tmp_path / 'cert.pem'}",
                    "--id-attr:Id", f"{NS}:SubmitDossier", "--output",
                    str(tmp_path / "signed.xml"), str(tmp_path / "template.xml")],
                   check=True, capture_output=True, timeout=30)
    body = (tmp_path / "signed.xml").read_bytes()
    first, duplicate = answer(hub.send(body, SOAP12))
    assert duplicate == "false" and hub.outbox_rows(first) == 1
    assert answer(hub.send(body, SOAP12)) == (first, "true")


# -- pruning never forgets a resend inside the window --------------------------------------------


def test_the_window_pruning_keeps_is_the_entry_points_window() -> None:
    settings = Settings(signature_max_age=MAX_AGE, clock_skew=SKEW)
    assert idempotency_window(settings) == timedelta(
        seconds=AgeWindow.from_settings(settings).span) == timedelta(minutes=6)


def test_store_prune_refuses_to_forget_keys_inside_the_window(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIENTHONG_DATA_DIR", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    with Store.open(url) as store, store.begin() as tx:
        tx.connection.execute(store_tables.intake_idempotency.insert(), [
            {"client": CLIENT, "key": "xmldsig:young", "message_id": "m-young",
             "request_sha256": "0" * 64,
             "created_at": datetime.now(UTC) - timedelta(minutes=5)}])

    def prune(age: str) -> Any:
        return CliRunner().invoke(store_cli, ["prune", "--store-url", url,
                                              "--idempotency-older-than", age])

    for too_short in ("5m", "90s", "359"):
        result = prune(too_short)
        assert result.exit_code == 2, result.output
        said = " ".join(result.output.replace("│", " ").split())  # the error box, unwrapped
        assert "--idempotency-older-than" in said and "give at least 360s" in said, said
    kept = prune("6m")  # exactly the window (300 s + 60 s of skew): allowed, the row stays
    assert kept.exit_code == 0, kept.output
    assert "0 idempotency keys" in kept.output
    # The window follows the settings.
    monkeypatch.setenv("LIENTHONG_SIGNATURE_MAX_AGE", "3600")
    assert prune("30m").exit_code == 2
    with Store.open(url) as store, store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(
            store_tables.intake_idempotency)).scalar_one() == 1
