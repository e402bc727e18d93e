"""The hub's own XML-DSig profile (hub.api.soap.xmldsig) against two independent
implementations: signxml, in both directions, on valid and on tampered documents, and the
``xmlsec1`` command (libxmlsec1) on what the hub signs."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from signxml.algorithms import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConstructionMethod,
    SignatureMethod,
)
from signxml.exceptions import SignXMLException
from signxml.signer import XMLSigner
from signxml.verifier import SignatureConfiguration, XMLVerifier

from hub.api.soap.xmldsig import (
    ECDSA_SHA256,
    RSA_PSS_SHA256,
    RSA_SHA256,
    SignatureRefused,
    check_enveloped,
    sign_enveloped,
)
from hub.signing import generate

NS = "urn:lienthong:hub:v1"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
DS = {"ds": DSIG}
# Pretty-printed, namespaces declared on the envelope, text with Vietnamese letters: what a
# SOAP stack may well send.
DOCUMENT = f"""<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:lt="{NS}">
  <s:Body>
    <lt:ReportStatus Id="request">
      <lt:createdAt>2025-01-01T08:00:00+07:00</lt:createdAt>
      <lt:statusChange>
        <lt:dossierCode>000.00.00.H56-250101-0001</lt:dossierCode>
        <lt:status>4</lt:status>
        <lt:note>Thẩm định hồ sơ</lt:note>
      </lt:statusChange>
    </lt:ReportStatus>
  </s:Body>
</s:Envelope>"""


def _key(alg: str) -> tuple[rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, x509.Certificate]:
    material = generate("VN:GOV:000.00.00.H56:igate", alg)
    assert isinstance(material.private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    assert material.certificate is not None
    return material.private_key, material.certificate


@pytest.fixture(scope="module")
def rsa_key() -> tuple[rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, x509.Certificate]:
    return _key("RS256")


@pytest.fixture(scope="module")
def ec_key() -> tuple[rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, x509.Certificate]:
    return _key("ES256")


def _payload(document: bytes) -> etree._Element:
    return _payload_of(etree.fromstring(document))


def _ours(payload: etree._Element, cert: x509.Certificate, method: str = RSA_SHA256) -> None:
    signature = payload[-1]
    references = signature.findall("ds:SignedInfo/ds:Reference", DS)
    assert len(references) == 1
    check_enveloped(payload, signature, references[0], cert.public_key(), method)


def _signxml_verifies(payload: etree._Element, cert: x509.Certificate) -> bool:
    try:
        XMLVerifier().verify(copy.deepcopy(payload), x509_cert=cert,
                             expect_config=SignatureConfiguration(location="./"))
    except (SignXMLException, ValueError, etree.LxmlError):
        return False
    return True


def _signxml_signed(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
                    cert: x509.Certificate, method: SignatureMethod,
                    *, pretty: bool = False) -> bytes:
    """DOCUMENT with its request element signed by signxml, as bytes on the wire."""
    root = etree.fromstring(DOCUMENT.encode())
    payload = _payload(etree.tostring(root))
    signer = XMLSigner(method=SignatureConstructionMethod.enveloped, signature_algorithm=method,
                       digest_algorithm=DigestAlgorithm.SHA256,
                       c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0)
    signed = signer.sign(payload, key=key, cert=[cert], reference_uri="#request")
    body = etree.fromstring(DOCUMENT.encode())[0]
    body.replace(body[0], signed)
    if pretty:
        # Whitespace inside the signature (outside SignedInfo), and the request element's
        # closing whitespace split around the signature: neither changes what was signed.
        signature = signed[-1]
        before = signature.getprevious()
        assert before is not None and before.tail == "\n    "
        before.tail, signature.tail = "\n", "    "
        signature.text = "\n      "
        for child in signature:
            child.tail = "\n      "
        signature[-1].tail = "\n    "
    return etree.tostring(body.getparent())


def _hub_signed(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
                cert: x509.Certificate) -> bytes:
    root = etree.fromstring(DOCUMENT.encode())
    sign_enveloped(_payload_of(root), key, cert)
    return etree.tostring(root)


def _payload_of(root: etree._Element) -> etree._Element:
    payload = root.find(f".//{{{NS}}}ReportStatus")
    assert payload is not None
    return payload


@pytest.mark.parametrize(("alg", "method"), [
    ("RS256", SignatureMethod.RSA_SHA256),
    ("PS256", SignatureMethod.SHA256_RSA_MGF1),
    ("ES256", SignatureMethod.ECDSA_SHA256),
])
@pytest.mark.parametrize("pretty", [False, True])
def test_what_signxml_signs_the_hub_verifies(alg: str, method: SignatureMethod,
                                            pretty: bool) -> None:
    key, cert = _key(alg)
    payload = _payload(_signxml_signed(key, cert, method, pretty=pretty))
    before = etree.tostring(payload)
    _ours(payload, cert, {"RS256": RSA_SHA256, "PS256": RSA_PSS_SHA256,
                          "ES256": ECDSA_SHA256}[alg])
    # The check takes the signature out to digest the rest, and puts it back as it was.
    assert etree.tostring(payload) == before


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_what_the_hub_signs_signxml_verifies(alg: str) -> None:
    key, cert = _key(alg)
    payload = _payload(_hub_signed(key, cert))
    assert _signxml_verifies(payload, cert)
    _ours(payload, cert, RSA_SHA256 if alg == "RS256" else ECDSA_SHA256)


def test_xmlsec1_verifies_what_the_hub_signs(tmp_path: Path, rsa_key: tuple[
        rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, x509.Certificate]) -> None:
    key, cert = rsa_key
    document = _hub_signed(key, cert)
    assert _xmlsec1_verifies(tmp_path, document, cert)
    assert not _xmlsec1_verifies(tmp_path, document.replace(b">4<", b">5<"), cert)
    # The signing time is covered for xmlsec1 as for the hub.
    assert not _xmlsec1_verifies(tmp_path, document.replace(b"T08:00:00+07:00",
                                                            b"T08:04:00+07:00"), cert)


def test_inclusive_namespace_prefixes_are_honoured(tmp_path: Path, rsa_key: tuple[
        rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, x509.Certificate]) -> None:
    """Exclusive C14N with an InclusiveNamespaces PrefixList (on the reference's transform and
    on SignedInfo) renders the listed prefixes from the envelope; xmlsec1 signs such a
    template and the check must agree with it."""
    key, cert = rsa_key
    ec14n = "http://www.w3.org/2001/10/xml-exc-c14n#"
    inclusive = f'<ec:InclusiveNamespaces xmlns:ec="{ec14n}" PrefixList="s"/>'
    template = (
        f'<ds:Signature xmlns:ds="{DSIG}"><ds:SignedInfo>'
        f'<ds:CanonicalizationMethod Algorithm="{ec14n}">{inclusive}'
        "</ds:CanonicalizationMethod>"
        f'<ds:SignatureMethod Algorithm="{RSA_SHA256}"/><ds:Reference URI="#request">'
        f'<ds:Transforms><ds:Transform Algorithm="{DSIG}enveloped-signature"/>'
        f'<ds:Transform Algorithm="{ec14n}">{inclusive}</ds:Transform></ds:Transforms>'
        '<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
        "<ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/></ds:Signature>")
    document = DOCUMENT.replace("</lt:statusChange>\n    </lt:ReportStatus>",
                                f"</lt:statusChange>\n    {template}</lt:ReportStatus>")
    (tmp_path / "template.xml").write_text(document)
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    xmlsec1 = shutil.which("xmlsec1")
    assert xmlsec1, "xmlsec1 is required (Debian package xmlsec1)"
    subprocess.run([xmlsec1, "--sign", "--privkey-pem", str(tmp_path / "key.pem"),
                    "--id-attr:Id", f"{NS}:ReportStatus", "--output",
                    str(tmp_path / "signed.xml"), str(tmp_path / "template.xml")],
                   check=True, capture_output=True)
    signed = (tmp_path / "signed.xml").read_bytes()
    assert _xmlsec1_verifies(tmp_path, signed, cert, "--pubkey-cert-pem")
    _ours(_payload(signed), cert)
    # Without the prefix list the digest differs: the prefixes were really taken into account.
    payload = _payload(signed)
    for element in payload.iter(f"{{{ec14n}}}InclusiveNamespaces"):
        element.getparent().remove(element)
    with pytest.raises(SignatureRefused):
        _ours(payload, cert)


def _xmlsec1_verifies(tmp_path: Path, document: bytes, cert: x509.Certificate,
                      key_option: str = "--trusted-pem") -> bool:
    """``key_option``: --trusted-pem when the document carries the certificate in KeyInfo,
    --pubkey-cert-pem when it carries no key information."""
    xmlsec1 = shutil.which("xmlsec1")
    assert xmlsec1, "xmlsec1 is required (Debian package xmlsec1)"
    (tmp_path / "signer.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    (tmp_path / "message.xml").write_bytes(document)
    result = subprocess.run(
        [xmlsec1, "--verify", "--id-attr:Id", f"{NS}:ReportStatus", key_option,
         str(tmp_path / "signer.pem"), str(tmp_path / "message.xml")],
        capture_output=True, text=True, check=False)
    return result.returncode == 0


_TAMPERINGS = {
    "text": lambda p: p.find(f".//{{{NS}}}status").__setattr__("text", "5"),
    # The signing time is signed content: a replay cannot be made fresh, not even by writing
    # the same instant another way.
    "created at refreshed": lambda p: p.find(f"{{{NS}}}createdAt").__setattr__(
        "text", "2025-01-01T08:04:59+07:00"),
    "created at rewritten": lambda p: p.find(f"{{{NS}}}createdAt").__setattr__(
        "text", "2025-01-01T01:00:00Z"),
    "created at removed": lambda p: p.remove(p.find(f"{{{NS}}}createdAt")),
    "attribute": lambda p: p.find(f".//{{{NS}}}note").set("lang", "vi"),
    "element added": lambda p: etree.SubElement(p.find(f"{{{NS}}}statusChange"),
                                                f"{{{NS}}}officer"),
    "element removed": lambda p: p.find(f"{{{NS}}}statusChange").remove(
        p.find(f".//{{{NS}}}note")),
    "digest value": lambda p: p.find(".//ds:DigestValue", DS).__setattr__(
        "text", "AAAA" + p.find(".//ds:DigestValue", DS).text[4:]),
    "signature value": lambda p: p.find("ds:Signature/ds:SignatureValue", DS).__setattr__(
        "text", "AAAA" + p.find("ds:Signature/ds:SignatureValue", DS).text[4:]),
    "digest method": lambda p: p.find(".//ds:DigestMethod", DS).set(
        "Algorithm", "http://www.w3.org/2000/09/xmldsig#sha1"),
    "transform dropped": lambda p: p.find(".//ds:Transforms", DS).remove(
        p.find(".//ds:Transforms", DS)[1]),
    "xpath transform": lambda p: etree.SubElement(
        p.find(".//ds:Transforms", DS), f"{{{DSIG}}}Transform",
        Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"),
    "inclusive c14n": lambda p: p.find(".//ds:CanonicalizationMethod", DS).set(
        "Algorithm", "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"),
    "signed info changed": lambda p: p.find(".//ds:Reference", DS).set("Type", "x"),
}


@pytest.mark.parametrize("how", sorted(_TAMPERINGS))
def test_a_tampered_signature_is_refused_by_both(how: str, rsa_key: tuple[
        rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, x509.Certificate]) -> None:
    key, cert = rsa_key
    payload = _payload(_hub_signed(key, cert))
    _TAMPERINGS[how](payload)
    with pytest.raises(SignatureRefused):
        _ours(payload, cert)
    assert not _signxml_verifies(payload, cert)


def test_another_key_is_refused(rsa_key: tuple[
        rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, x509.Certificate]) -> None:
    key, _ = rsa_key
    _, other = _key("RS256")
    payload = _payload(_hub_signed(key, rsa_key[1]))
    with pytest.raises(SignatureRefused, match="does not verify"):
        _ours(payload, other)
    # The pinned method must be the one used, whatever the key could do.
    with pytest.raises(SignatureRefused, match="signature method"):
        _ours(payload, rsa_key[1], RSA_PSS_SHA256)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_edits_are_judged_alike(data: st.DataObject, rsa_key: tuple[
        rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, x509.Certificate]) -> None:
    """Any edit of any text or tail of the signed content (whitespace, letters, nothing) in the
    signed document: the hub and signxml agree on whether it still verifies."""
    key, cert = rsa_key
    payload = _payload(_hub_signed(key, cert))
    signature = payload[-1]
    nodes = [n for n in payload.iter() if n is not signature
             and signature not in n.iterancestors()]
    node = data.draw(st.sampled_from(nodes))
    where = data.draw(st.sampled_from(["text", "tail"]))
    if node is payload and where == "tail":
        where = "text"
    value = data.draw(st.one_of(st.just(""), st.just(" "), st.just("\n"),
                                st.text(alphabet="aăâ0 9\t", max_size=5)))
    setattr(node, where, value or None)
    try:
        _ours(payload, cert)
        ours = True
    except SignatureRefused:
        ours = False
    assert ours == _signxml_verifies(payload, cert)
