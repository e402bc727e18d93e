"""The one XML-DSig profile the hub speaks, signed and checked on the hot path.

The profile (``dsig`` explains why this one): an *enveloped* signature as the last child of the
signed element, one Reference naming that element's own ``Id``, transforms enveloped-signature
then exclusive C14N 1.0, SHA-256/384/512 digest, exclusive C14N of SignedInfo, RSA-SHA256
(also RSA-PSS-SHA256 and ECDSA-SHA256 for keys pinned to them).

Why not signxml here: it is a general XML-DSig implementation, and for that generality it
serialises and re-parses the document about eight times per check, several times this module's
cost on every SOAP request; python-xmlsec (libxmlsec1) verifies faster than signxml but signs
slower (its bundled OpenSSL). The figures, and how to measure them again:
docs/performance.md#xml-dsig-profile. What is left to write by hand is small because the hard
parts are libraries: canonicalisation is libxml2's exclusive C14N (through lxml), the
cryptography is ``cryptography``'s. Anything outside the profile (another transform, an XPath,
a second reference, an unknown algorithm) is refused, never interpreted.
``tests/test_soap_xmldsig.py`` checks this module against two independent implementations:
signxml (both directions, on valid and on tampered documents) and the ``xmlsec1`` command.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from hub.api.soap.contract import DSIG_NS

EXC_C14N: Final = "http://www.w3.org/2001/10/xml-exc-c14n#"
EXC_C14N_WITH_COMMENTS: Final = EXC_C14N + "WithComments"
ENVELOPED: Final = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
RSA_SHA256: Final = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_PSS_SHA256: Final = "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1"
ECDSA_SHA256: Final = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SHA256: Final = "http://www.w3.org/2001/04/xmlenc#sha256"
DIGESTS: Final = {
    SHA256: hashlib.sha256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": hashlib.sha384,
    "http://www.w3.org/2001/04/xmlenc#sha512": hashlib.sha512,
}
# Exclusive C14N with or without comments is the same here: the hardened parser drops comments.
_C14N_METHODS: Final = frozenset({EXC_C14N, EXC_C14N_WITH_COMMENTS})
_INCLUSIVE_NAMESPACES: Final = f"{{{EXC_C14N}}}InclusiveNamespaces"
_NS: Final = {"ds": DSIG_NS}


def _ds(name: str) -> str:
    return f"{{{DSIG_NS}}}{name}"


class SignatureRefused(ValueError):
    """The signature is outside the profile or does not verify; ``args[0]`` says which part."""


@dataclass(frozen=True, slots=True)
class Checked:
    """What a verified signature said."""

    method: str  # SignatureMethod URI
    digest: str  # base64 DigestValue, as sent
    value: str  # base64 SignatureValue, as sent


def _c14n(element: etree._Element, prefixes: list[str] | None = None) -> bytes:
    out: bytes = etree.tostring(element, method="c14n", exclusive=True, with_comments=False,
                                inclusive_ns_prefixes=prefixes)
    return out


def squeeze(value: str | None) -> str:
    """Base64 text as sent, without the line breaks XML may wrap it in."""
    return "".join((value or "").split())


def _b64(value: str | None, what: str) -> bytes:
    try:
        return base64.b64decode(squeeze(value), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureRefused(f"{what} is not base64") from None


def _algorithm(element: etree._Element | None, what: str) -> str:
    if element is None:
        raise SignatureRefused(f"{what} is missing")
    return element.get("Algorithm") or ""


def enveloped_digest_input(element: etree._Element, signature: etree._Element,
                           prefixes: list[str] | None = None) -> bytes:
    """Exclusive C14N of ``element`` without ``signature`` (its child): what the enveloped
    transform then exclusive C14N produce. The signature is taken out and put back in place,
    with its tail text, so ``element`` ends as it began."""
    tail = signature.tail
    index = element.index(signature)
    previous = signature.getprevious()
    element.remove(signature)  # lxml drops the tail with it; the transform keeps it
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            element.text = (element.text or "") + tail
    try:
        return _c14n(element, prefixes)
    finally:
        if tail:
            if previous is not None:
                previous.tail = (previous.tail or "")[: -len(tail)] or None
            else:
                element.text = (element.text or "")[: -len(tail)] or None
        element.insert(index, signature)
        signature.tail = tail


def _reference_transforms(reference: etree._Element) -> list[str] | None:
    """Check the Reference's transforms are exactly enveloped-signature then exclusive C14N;
    the InclusiveNamespaces prefix list of the latter, if any."""
    transforms = reference.findall("ds:Transforms/ds:Transform", _NS)
    algorithms = [t.get("Algorithm") for t in transforms]
    if len(algorithms) != 2 or algorithms[0] != ENVELOPED or algorithms[1] not in _C14N_METHODS:
        raise SignatureRefused(
            f"the Reference's transforms are {algorithms}; the profile is exactly "
            f"[{ENVELOPED}, {EXC_C14N}]")
    inclusive = transforms[1].find(_INCLUSIVE_NAMESPACES)
    if inclusive is None:
        return None
    return (inclusive.get("PrefixList") or "").split() or None


def check_enveloped(element: etree._Element, signature: etree._Element,
                    reference: etree._Element, public_key: object, method: str) -> Checked:
    """Verify the enveloped ``signature`` (last child of ``element``) whose only ``reference``
    the caller has already matched to ``element``'s Id, with ``public_key`` and the pinned
    ``method`` (a SignatureMethod URI). ``SignatureRefused`` says what failed."""
    signed_info = signature.find("ds:SignedInfo", _NS)
    if signed_info is None:
        raise SignatureRefused("SignedInfo is missing")
    c14n_method = _algorithm(signed_info.find("ds:CanonicalizationMethod", _NS),
                             "SignedInfo/CanonicalizationMethod")
    if c14n_method not in _C14N_METHODS:
        raise SignatureRefused(
            f"the canonicalization method {c14n_method!r:.100} is not supported; use "
            f"{EXC_C14N}")
    signed_method = _algorithm(signed_info.find("ds:SignatureMethod", _NS),
                               "SignedInfo/SignatureMethod")
    if signed_method != method:
        raise SignatureRefused(f"the signature method is {signed_method!r:.100}, not {method}")
    prefixes = _reference_transforms(reference)
    digest_uri = _algorithm(reference.find("ds:DigestMethod", _NS), "Reference/DigestMethod")
    hash_of = DIGESTS.get(digest_uri)
    if hash_of is None:
        raise SignatureRefused(
            f"the digest method {digest_uri!r:.100} is not accepted; use {SHA256}")
    digest_text = reference.findtext("ds:DigestValue", namespaces=_NS)
    sent_digest = _b64(digest_text, "DigestValue")
    actual = hash_of(enveloped_digest_input(element, signature, prefixes)).digest()
    if not hmac.compare_digest(actual, sent_digest):
        raise SignatureRefused("the digest of the signed element does not match DigestValue")
    value_text = signature.findtext("ds:SignatureValue", namespaces=_NS)
    value = _b64(value_text, "SignatureValue")
    signed_info_prefixes = None
    inclusive = signed_info.find(f"ds:CanonicalizationMethod/{_INCLUSIVE_NAMESPACES}", _NS)
    if inclusive is not None:
        signed_info_prefixes = (inclusive.get("PrefixList") or "").split() or None
    _verify_value(public_key, method, value, _c14n(signed_info, signed_info_prefixes))
    return Checked(method=method, digest=squeeze(digest_text), value=squeeze(value_text))


def _verify_value(public_key: object, method: str, value: bytes, data: bytes) -> None:
    try:
        if method == RSA_SHA256 and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(value, data, padding.PKCS1v15(), hashes.SHA256())
        elif method == RSA_PSS_SHA256 and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(value, data, padding.PSS(
                mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
                hashes.SHA256())
        elif method == ECDSA_SHA256 and isinstance(public_key, ec.EllipticCurvePublicKey):
            size = (public_key.curve.key_size + 7) // 8
            if len(value) != 2 * size:
                raise SignatureRefused(
                    f"an ECDSA SignatureValue here is {2 * size} bytes (r then s), not "
                    f"{len(value)}")
            der = encode_dss_signature(int.from_bytes(value[:size], "big"),
                                       int.from_bytes(value[size:], "big"))
            public_key.verify(der, data, ec.ECDSA(hashes.SHA256()))
        else:
            raise SignatureRefused(f"the key does not sign with {method}")
    except InvalidSignature:
        raise SignatureRefused("SignatureValue does not verify over SignedInfo") from None


def sign_enveloped(element: etree._Element,
                   key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
                   certificate: x509.Certificate | bytes) -> etree._Element:
    """Append to ``element`` (which has an ``Id``) its enveloped signature: RSA-SHA256 for an
    RSA key, ECDSA-SHA256 for an EC key, SHA-256 digest, exclusive C14N, the certificate (or
    its DER bytes) in KeyInfo. Returns ``element``."""
    element_id = element.get("Id")
    if not element_id:
        raise ValueError("the element to sign needs an Id attribute")
    method = RSA_SHA256 if isinstance(key, rsa.RSAPrivateKey) else ECDSA_SHA256
    digest = hashlib.sha256(_c14n(element)).digest()
    signature = etree.SubElement(element, _ds("Signature"), nsmap={"ds": DSIG_NS})
    signed_info = etree.SubElement(signature, _ds("SignedInfo"))
    etree.SubElement(signed_info, _ds("CanonicalizationMethod"), Algorithm=EXC_C14N)
    etree.SubElement(signed_info, _ds("SignatureMethod"), Algorithm=method)
    reference = etree.SubElement(signed_info, _ds("Reference"), URI=f"#{element_id}")
    transforms = etree.SubElement(reference, _ds("Transforms"))
    etree.SubElement(transforms, _ds("Transform"), Algorithm=ENVELOPED)
    etree.SubElement(transforms, _ds("Transform"), Algorithm=EXC_C14N)
    etree.SubElement(reference, _ds("DigestMethod"), Algorithm=SHA256)
    etree.SubElement(reference, _ds("DigestValue")).text = base64.b64encode(digest).decode()
    data = _c14n(signed_info)
    if isinstance(key, rsa.RSAPrivateKey):
        value = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        size = (key.curve.key_size + 7) // 8
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        value = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    etree.SubElement(signature, _ds("SignatureValue")).text = base64.b64encode(value).decode()
    der = (certificate if isinstance(certificate, bytes)
           else certificate.public_bytes(Encoding.DER))
    x509_data = etree.SubElement(etree.SubElement(signature, _ds("KeyInfo")), _ds("X509Data"))
    etree.SubElement(x509_data, _ds("X509Certificate")).text = base64.b64encode(der).decode()
    return element
