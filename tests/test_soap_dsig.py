"""XML-DSig of requests (verified against the trust store) and of the hub's responses."""

from __future__ import annotations

import base64
import copy
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml.algorithms import CanonicalizationMethod
from signxml.signer import XMLSigner

from hub.api.soap.contract import NS
from hub.api.soap.dsig import (
    PROOF_SCHEME,
    SIGNATURE_TAG,
    RequestVerifier,
    ResponseSigner,
    sign_element,
)
from hub.errors import ConfigError, InvalidMessage
from hub.signing import TrustStore, generate
from hub.signing.keys import KeyMaterial, kid_of

CLIENT = "VN:GOV:000.00.00.H56:igate"
OTHER = "VN:GOV:000.00.00.H41:dvc"
HUB_SOAP = "VN:GOV:000.00.00.G22:lienthong-soap"
DS = {"ds": "http://www.w3.org/2000/09/xmldsig#"}
# The order of the P-256 group (SEC 2): an ECDSA signature (r, s) also verifies as (r, n - s).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
REQUEST = (f'<lt:ReportStatus xmlns:lt="{NS}"><lt:createdAt>2025-01-02T09:00:00+07:00'
           "</lt:createdAt><lt:statusChange><lt:dossierCode>"
           "000.00.00.H56-250101-0001</lt:dossierCode><lt:status>4</lt:status>"
           "<lt:at>2025-01-02T09:00:00</lt:at><lt:note>Thẩm định</lt:note></lt:statusChange>"
           "</lt:ReportStatus>")


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
    client_ec: Identity
    other: Identity
    rogue: Identity  # same system id as the client, not trusted
    expired: Identity
    pss: Identity  # trusted, pinned to PS256
    hub: Identity


@pytest.fixture(scope="module")
def keys() -> Keys:
    past = datetime.now(UTC) - timedelta(days=30)
    return Keys(
        client=identity(CLIENT, "RS256"),
        client_ec=identity("VN:GOV:000.00.00.H56:ec", "ES256"),
        other=identity(OTHER, "RS256"),
        rogue=identity(CLIENT, "RS256"),
        expired=identity("VN:GOV:000.00.00.H56:old", "RS256", days=1, now=past),
        pss=identity("VN:GOV:000.00.00.H56:pss", "PS256"),
        hub=identity(HUB_SOAP, "RS256"),
    )


@pytest.fixture
def trust(tmp_path: Path, keys: Keys) -> TrustStore:
    store = TrustStore(tmp_path / "trust")
    for km in (keys.client, keys.client_ec, keys.other):
        store.add(km.pem)
    store.add(keys.pss.pem, alg="PS256")
    # An expired certificate cannot be added through ``add``: put the file there directly.
    (tmp_path / "trust" / "old.pem").write_bytes(keys.expired.pem)
    store.reload()
    return store


def _signed(km: Identity, xml: str = REQUEST, element_id: str = "request") -> etree._Element:
    element = etree.fromstring(xml.encode())
    signed = sign_element(element, km.key, km.cert,
                          element_id=element_id)
    # As it arrives: inside an envelope, parsed from the bytes on the wire.
    wire = (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
            + etree.tostring(signed) + b"</s:Body></s:Envelope>")
    return etree.fromstring(wire)[0][0]


def _refused(trust: TrustStore, payload: etree._Element, system_id: str, code: str) -> str:
    with pytest.raises(InvalidMessage) as info:
        RequestVerifier(trust).verify(payload, system_id)
    assert info.value.code == code, info.value
    return info.value.message


def test_a_signed_request_verifies(trust: TrustStore, keys: Keys) -> None:
    payload = _signed(keys.client)
    proof = RequestVerifier(trust).verify(payload, CLIENT)
    assert proof.kid == kid_of(keys.client.cert) and proof.system_id == CLIENT
    assert proof.method.endswith("rsa-sha256")
    signature_value = payload.findtext("ds:Signature/ds:SignatureValue", namespaces=DS)
    assert signature_value is not None
    assert proof.signature == "".join(signature_value.split())
    assert proof.header() == (f"{PROOF_SCHEME};kid={proof.kid};digest={proof.digest};"
                              f"signature={proof.signature}")
    assert base64.b64decode(proof.digest) and len(base64.b64decode(proof.digest)) == 32


def test_the_same_signed_request_has_the_same_implicit_key(trust: TrustStore,
                                                           keys: Keys) -> None:
    verifier = RequestVerifier(trust)
    first = verifier.verify(_signed(keys.client), CLIENT).idempotency_key()
    again = verifier.verify(_signed(keys.client), CLIENT).idempotency_key()
    other = verifier.verify(_signed(keys.client, REQUEST.replace("Thẩm", "Xét")),
                            CLIENT).idempotency_key()
    assert first == again != other
    assert first.startswith(f"{PROOF_SCHEME}:") and len(first) <= 255


def test_the_implicit_key_is_the_signed_contents_not_the_signature_text(
        trust: TrustStore, keys: Keys) -> None:
    """A captured request whose SignatureValue is written differently, or (ECDSA) turned into
    its other valid form, still verifies: it must still be recognised as the same request."""
    verifier = RequestVerifier(trust)
    ec_id = "VN:GOV:000.00.00.H56:ec"
    payload = _signed(keys.client_ec)
    first = verifier.verify(payload, ec_id).idempotency_key()
    # ECDSA signs the same content differently each time: the key is still the same.
    assert verifier.verify(_signed(keys.client_ec), ec_id).idempotency_key() == first
    value = payload.find("ds:Signature/ds:SignatureValue", namespaces=DS)
    assert value is not None and value.text is not None
    raw = base64.b64decode(value.text)
    r, s = raw[:32], int.from_bytes(raw[32:], "big")
    value.text = base64.b64encode(r + (P256_ORDER - s).to_bytes(32, "big")).decode()
    malleated = verifier.verify(payload, ec_id)
    assert malleated.signature != "".join(base64.b64encode(raw).decode().split())
    assert malleated.idempotency_key() == first
    # RSA: base64 ignores the unused bits of the last character before the padding.
    payload = _signed(keys.client)
    rsa_key = verifier.verify(payload, CLIENT).idempotency_key()
    value = payload.find("ds:Signature/ds:SignatureValue", namespaces=DS)
    assert value is not None and value.text is not None and value.text.endswith("==")
    text = "".join(value.text.split())
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(text[-3])
    value.text = text[:-3] + alphabet[last ^ 0b1111] + "=="
    assert base64.b64decode(value.text) == base64.b64decode(text)
    respelled = verifier.verify(payload, CLIENT)
    assert respelled.signature != text and respelled.idempotency_key() == rsa_key


def test_an_ec_key_pinned_to_es256_verifies(trust: TrustStore, keys: Keys) -> None:
    proof = RequestVerifier(trust).verify(_signed(keys.client_ec), "VN:GOV:000.00.00.H56:ec")
    assert proof.method.endswith("ecdsa-sha256")


def test_unsigned(trust: TrustStore) -> None:
    payload = etree.fromstring(REQUEST.encode())
    message = _refused(trust, payload, CLIENT, "client.missing_signature")
    assert "ReportStatus" in message and "enveloped" in message


def test_changed_after_signing(trust: TrustStore, keys: Keys) -> None:
    payload = _signed(keys.client)
    status = payload.find(f"{{{NS}}}statusChange/{{{NS}}}status")
    assert status is not None
    status.text = "9"
    _refused(trust, payload, CLIENT, "client.bad_signature")


def test_a_refreshed_signing_time_breaks_the_signature(trust: TrustStore, keys: Keys) -> None:
    payload = _signed(keys.client)
    created = payload.find(f"{{{NS}}}createdAt")
    assert created is not None
    created.text = datetime.now(UTC).isoformat()
    _refused(trust, payload, CLIENT, "client.bad_signature")


def test_a_changed_signature_value(trust: TrustStore, keys: Keys) -> None:
    payload = _signed(keys.client)
    value = payload.find("ds:Signature/ds:SignatureValue", namespaces=DS)
    assert value is not None and value.text is not None
    raw = bytearray(base64.b64decode(value.text))
    raw[10] ^= 1
    value.text = base64.b64encode(bytes(raw)).decode()
    _refused(trust, payload, CLIENT, "client.bad_signature")


def test_an_untrusted_key(trust: TrustStore, keys: Keys) -> None:
    message = _refused(trust, _signed(keys.rogue), CLIENT, "client.unknown_key")
    assert kid_of(keys.rogue.cert) in message


def test_a_certificate_swapped_for_a_trusted_one(trust: TrustStore, keys: Keys) -> None:
    # Signed by the rogue key, KeyInfo claiming the client's trusted certificate.
    payload = _signed(keys.rogue)
    cert = payload.find("ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=DS)
    assert cert is not None
    trusted = _signed(keys.client).findtext(
        "ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=DS)
    cert.text = trusted
    _refused(trust, payload, CLIENT, "client.bad_signature")


def test_signed_by_another_client(trust: TrustStore, keys: Keys) -> None:
    message = _refused(trust, _signed(keys.other), CLIENT, "client.signer_mismatch")
    assert OTHER in message and CLIENT in message


def test_an_expired_certificate(trust: TrustStore, keys: Keys) -> None:
    message = _refused(trust, _signed(keys.expired), "VN:GOV:000.00.00.H56:old",
                       "client.certificate_expired")
    assert "expired" in message


def test_a_method_other_than_the_pinned_one(trust: TrustStore, keys: Keys) -> None:
    # The PSS-pinned key signs PKCS#1 v1.5 (rsa-sha256): refused whatever the math says.
    message = _refused(trust, _signed(keys.pss), "VN:GOV:000.00.00.H56:pss",
                       "client.algorithm_mismatch")
    assert "PS256" in message


def test_an_unknown_signature_method(trust: TrustStore, keys: Keys) -> None:
    payload = _signed(keys.client)
    method = payload.find("ds:Signature/ds:SignedInfo/ds:SignatureMethod", namespaces=DS)
    assert method is not None
    method.set("Algorithm", "http://www.w3.org/2000/09/xmldsig#rsa-sha1")
    _refused(trust, payload, CLIENT, "client.algorithm_mismatch")


def test_a_signature_over_another_element_is_refused(trust: TrustStore, keys: Keys) -> None:
    # Sign only the inner statusChange: the request element itself is not covered.
    element = etree.fromstring(REQUEST.encode())
    element[0].set("Id", "inner")
    signer = XMLSigner(c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0)
    signed = signer.sign(element, key=keys.client.key, cert=[keys.client.cert],
                         reference_uri="#inner")
    signed.set("Id", "outer")
    message = _refused(trust, signed, CLIENT, "client.bad_signature")
    assert "#inner" in message
    # A reference to "the whole document" (URI="") does not name the request element either.
    whole = signer.sign(etree.fromstring(REQUEST.encode()), key=keys.client.key,
                        cert=[keys.client.cert])
    whole.set("Id", "outer")
    _refused(trust, whole, CLIENT, "client.bad_signature")


def test_a_request_element_without_id(trust: TrustStore, keys: Keys) -> None:
    payload = _signed(keys.client)
    del payload.attrib["Id"]
    _refused(trust, payload, CLIENT, "client.bad_signature")


def test_signature_wrapping_is_refused(trust: TrustStore, keys: Keys) -> None:
    # The attacker keeps the genuine signed element (hidden inside) and its signature, and
    # puts its own content in the request element that carries the signed Id.
    genuine = _signed(keys.client)
    signature = genuine[-1]
    forged = etree.fromstring(REQUEST.replace(">4<", ">9<").encode())
    forged.set("Id", "request")
    hidden = copy.deepcopy(genuine)
    hidden.remove(hidden[-1])
    forged[0].append(hidden)
    forged.append(copy.deepcopy(signature))
    _refused(trust, forged, CLIENT, "client.bad_signature")
    hidden.set("Id", "elsewhere")  # no duplicate Id: then the digest gives it away
    _refused(trust, forged, CLIENT, "client.bad_signature")


def test_without_a_certificate_in_key_info_the_clients_keys_are_tried(
        trust: TrustStore, keys: Keys) -> None:
    payload = _signed(keys.client)
    signature = payload.find("ds:Signature", namespaces=DS)
    key_info = payload.find("ds:Signature/ds:KeyInfo", namespaces=DS)
    assert signature is not None and key_info is not None
    signature.remove(key_info)
    assert RequestVerifier(trust).verify(payload, CLIENT).system_id == CLIENT
    _refused(trust, payload, "VN:GOV:000.00.00.H99:unknown", "client.unknown_key")
    forged = _signed(keys.rogue)
    signature = forged.find("ds:Signature", namespaces=DS)
    key_info = forged.find("ds:Signature/ds:KeyInfo", namespaces=DS)
    assert signature is not None and key_info is not None
    signature.remove(key_info)
    _refused(trust, forged, CLIENT, "client.bad_signature")


def test_garbage_in_the_signature(trust: TrustStore, keys: Keys) -> None:
    payload = _signed(keys.client)
    cert = payload.find("ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=DS)
    assert cert is not None
    cert.text = "not base64 !!"
    _refused(trust, payload, CLIENT, "client.bad_signature")
    payload = _signed(keys.client)
    signed_info = payload.find("ds:Signature/ds:SignedInfo", namespaces=DS)
    assert signed_info is not None
    etree.SubElement(signed_info, "{http://www.w3.org/2000/09/xmldsig#}Bogus")
    _refused(trust, payload, CLIENT, "client.bad_signature")


def test_the_hub_signs_its_responses(tmp_path: Path, keys: Keys) -> None:
    keys.hub.material.save(tmp_path / "keys")
    signer = ResponseSigner.load(tmp_path / "keys", HUB_SOAP)
    assert signer.system_id == HUB_SOAP
    response = etree.Element(f"{{{NS}}}ReportStatusResponse", nsmap={"lt": NS}, Id="response")
    etree.SubElement(response, f"{{{NS}}}messageId").text = "m"
    signed = etree.fromstring(signer.sign(response))
    assert signed[-1].tag == SIGNATURE_TAG
    hub_trust = TrustStore(tmp_path / "hub-trust")
    hub_trust.add(keys.hub.pem)
    assert RequestVerifier(hub_trust).verify(signed, HUB_SOAP).kid == signer.kid


def test_the_response_key_must_be_rsa(tmp_path: Path, keys: Keys) -> None:
    generate(HUB_SOAP, "ES256").save(tmp_path / "keys")
    with pytest.raises(ConfigError) as info:
        ResponseSigner.load(tmp_path / "keys", HUB_SOAP)
    assert "RS256" in info.value.message
    with pytest.raises(ConfigError):
        ResponseSigner.load(tmp_path / "nowhere", HUB_SOAP)


def test_xmlsec1_verifies_a_signed_element(tmp_path: Path, keys: Keys) -> None:
    """The form is what stock tools verify (the full request and response over HTTP are
    checked with xmlsec1 in test_soap_service)."""
    xmlsec1 = shutil.which("xmlsec1")
    assert xmlsec1, "xmlsec1 is required (Debian package xmlsec1)"
    payload = _signed(keys.client)
    message = tmp_path / "message.xml"
    message.write_bytes(etree.tostring(payload.getroottree()))
    cert = tmp_path / "client.pem"
    cert.write_bytes(keys.client.pem)
    args = [xmlsec1, "--verify", "--id-attr:Id", f"{NS}:ReportStatus", "--trusted-pem",
            str(cert), str(message)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stderr


def test_key_rotation_without_a_certificate_in_key_info(tmp_path: Path, keys: Keys) -> None:
    # The client's old certificate (expired) and its new one are both in the trust store; the
    # signature names neither: the old one is tried first and refused, the new one holds.
    past = datetime.now(UTC) - timedelta(days=30)
    old = identity(CLIENT, "RS256", days=1, now=past)
    trust = TrustStore(tmp_path / "trust")
    trust.add(keys.client.pem)
    (tmp_path / "trust" / "old.pem").write_bytes(old.pem)
    trust.reload()
    assert [k.not_after < datetime.now(UTC) for k in trust.entries()] == [True, False]
    payload = _signed(keys.client)
    signature = payload.find("ds:Signature", namespaces=DS)
    key_info = payload.find("ds:Signature/ds:KeyInfo", namespaces=DS)
    assert signature is not None and key_info is not None
    signature.remove(key_info)
    proof = RequestVerifier(trust).verify(payload, CLIENT)
    assert proof.kid == kid_of(keys.client.cert)
