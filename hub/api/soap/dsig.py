"""XML-DSig on SOAP requests and responses: the checks around the signature (trust store,
pinned algorithm, validity, which element it covers); the signature itself is
``hub.api.soap.xmldsig`` (the one profile, over libxml2's C14N and ``cryptography``).

The form, for requests from upstream systems and for the hub's responses alike: an *enveloped*
signature of the request (or response) element, the only child of the SOAP Body::

    <soap:Body>
      <lt:SubmitDossier Id="request">
        <lt:createdAt>2025-03-01T08:00:00+07:00</lt:createdAt>
        ...the request...
        <ds:Signature>
          <ds:SignedInfo>
            <ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
            <ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
            <ds:Reference URI="#request">
              <ds:Transforms>
                <ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
                <ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
              </ds:Transforms>
              <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
              <ds:DigestValue>...</ds:DigestValue>
            </ds:Reference>
          </ds:SignedInfo>
          <ds:SignatureValue>...</ds:SignatureValue>
          <ds:KeyInfo><ds:X509Data><ds:X509Certificate>...</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
        </ds:Signature>
      </lt:SubmitDossier>
    </soap:Body>

Why this form: the signature covers exactly the element the hub dispatches on, validates and
turns into the event (no wrapping attack can point it elsewhere: the reference must name the
request element's own Id and the signature must be its last child); exclusive C14N makes it
independent of the envelope around it, so SOAP stacks and intermediaries may rewrite the
envelope and headers freely; and stock tools verify it: ``xmlsec1 --verify --id-attr:Id
urn:lienthong:hub:v1:SubmitDossier --trusted-pem signer.pem message.xml``, Java's
``XMLSignatureFactory`` (after ``setIdAttributeNS(null, "Id", true)``) and .NET's
``SignedXml`` (which finds ``Id`` attributes itself).

Requests are checked against the trust store (``hub.signing.TrustStore``): the certificate in
KeyInfo must be trusted, belong to the authenticated client (its CN is the client's system id),
be valid now, and sign with the algorithm pinned for it (RS256 -> rsa-sha256, PS256 ->
rsa-pss sha256-mgf1, ES256 -> ecdsa-sha256). Errors use the codes of ``hub.signing.verifier``.
The signing time the request carries (``createdAt``, signed like the rest of the element, so
a replay cannot be made fresh) is judged by ``freshness`` once the signature holds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from hub.api.soap.contract import DSIG_NS
from hub.api.soap.xmldsig import (
    ECDSA_SHA256,
    RSA_PSS_SHA256,
    RSA_SHA256,
    Checked,
    SignatureRefused,
    check_enveloped,
    sign_enveloped,
    squeeze,
)
from hub.errors import ConfigError, InvalidMessage
from hub.signing.keys import KeyFiles, kid_of, load_certificate, load_private_key, system_id_of
from hub.signing.truststore import TrustedKey, TrustStore

SIGNATURE_TAG: Final = f"{{{DSIG_NS}}}Signature"
_DS: Final = {"ds": DSIG_NS}
# The XML-DSig signature method each JWS algorithm pin of the trust store stands for.
_METHODS: Final = {"RS256": RSA_SHA256, "PS256": RSA_PSS_SHA256, "ES256": ECDSA_SHA256}
_SUPPORTED: Final = frozenset(_METHODS.values())
PROOF_SCHEME: Final = "xmldsig"
_KID_CACHE_SIZE: Final = 1024


def _invalid(message: str, code: str, field: str | None = "Signature") -> InvalidMessage:
    return InvalidMessage(message, code=code, field=field)


def _when(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class UpstreamProof:
    """What the hub keeps of a verified upstream signature (header ``lt-upstream-proof``)."""

    kid: str
    system_id: str
    method: str  # SignatureMethod URI
    digest: str  # base64 DigestValue of the request element
    signature: str  # base64 SignatureValue

    def header(self) -> str:
        return (f"{PROOF_SCHEME};kid={self.kid};digest={self.digest};"
                f"signature={self.signature}")

    def idempotency_key(self) -> str:
        """A key for a request that names none: the very same signed request sent again
        within the age window is a duplicate, not a second event.

        It is made of the digest of the signed content (which covers ``createdAt``), not of
        the SignatureValue: the text of a SignatureValue can be changed without the
        signature's breaking (base64's unused padding bits; an ECDSA signature's s turned into
        n - s; PSS and ECDSA sign the same content differently each time), so anyone holding
        a captured request could make a copy under another key. The DigestValue is itself
        signed, and the same content always digests alike."""
        digest = base64.b64decode(self.digest)  # verified, so valid base64
        return f"{PROOF_SCHEME}:{hashlib.sha256(digest).hexdigest()}"


class RequestVerifier:
    """Checks the enveloped signature of a request element against the trust store."""

    def __init__(self, trust: TrustStore, *, clock: Callable[[], float] = time.time) -> None:
        self.trust = trust
        self.clock = clock
        self._kids: dict[str, str] = {}

    def verify(self, payload: etree._Element, system_id: str) -> UpstreamProof:
        """``payload`` is the request element (already schema-valid); ``system_id`` is the
        authenticated client, whose key must have made the signature."""
        signature = _last_child(payload)
        if signature is None or signature.tag != SIGNATURE_TAG:
            raise _invalid(
                f"the request {etree.QName(payload).localname} is not signed; sign it with the "
                "system's key: an enveloped XML-DSig (RSA-SHA256, exclusive C14N) as the last "
                "child of the request element, its Reference pointing at the element's Id",
                "client.missing_signature",
            )
        reference = covered_reference(payload, signature)
        candidates = self._candidates(signature, system_id)
        method = self._method(signature)
        last_error: InvalidMessage | None = None
        for key in candidates:
            try:
                self._check_key(key, system_id, method)
                checked = self._check_signature(payload, signature, reference, key, method)
            except InvalidMessage as exc:  # during a key rotation, the next one may do
                last_error = exc
                continue
            return UpstreamProof(kid=key.kid, system_id=key.system_id, method=method,
                                 digest=checked.digest, signature=checked.value)
        assert last_error is not None  # _candidates never returns an empty list
        raise last_error

    def _candidates(self, signature: etree._Element, system_id: str) -> list[TrustedKey]:
        text = signature.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=_DS)
        if text is None:
            # No certificate in KeyInfo (a KeyName, an issuer and serial...): try the client's
            # own trusted certificates, as during a key rotation it may have two.
            own = [k for k in self.trust.entries() if k.system_id == system_id]
            if not own:
                raise _invalid(
                    f"the signature carries no X509Certificate in KeyInfo and the trust store "
                    f"holds no certificate of {system_id}; add it with `lienthong keys trust "
                    "FILE.pem`, and put the certificate in KeyInfo/X509Data",
                    "client.unknown_key",
                )
            return own
        kid = self._kid_of(squeeze(text))
        key = self.trust.get(kid)
        if key is None:
            raise _invalid(
                f"the signing certificate (kid {kid}) is not in the hub's trust store; add the "
                "client's certificate with `lienthong keys trust FILE.pem`, or sign with a key "
                "whose certificate is trusted",
                "client.unknown_key",
            )
        return [key]

    def _kid_of(self, certificate_b64: str) -> str:
        # A client sends the same certificate with every request: it is parsed and hashed once
        # (docs/performance.md#certificate-kid-cache). The kid is a function of the bytes
        # alone, so the trust store may change meanwhile; the lookup in it is made every time.
        kid = self._kids.get(certificate_b64)
        if kid is not None:
            return kid
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode(certificate_b64))
        except (ValueError, binascii.Error):
            raise _invalid(
                "KeyInfo/X509Data/X509Certificate is not a base64 DER certificate; put the "
                "signer's certificate there as XML-DSig describes",
                "client.bad_signature",
            ) from None
        kid = kid_of(cert)
        if len(self._kids) >= _KID_CACHE_SIZE:
            self._kids.clear()
        self._kids[certificate_b64] = kid
        return kid

    @staticmethod
    def _method(signature: etree._Element) -> str:
        uri = signature.find("ds:SignedInfo/ds:SignatureMethod", namespaces=_DS)
        algorithm = uri.get("Algorithm") if uri is not None else None
        if algorithm not in _SUPPORTED:
            raise _invalid(
                f"the signature method {algorithm!r:.100} is not supported; sign with "
                f"{RSA_SHA256}",
                "client.algorithm_mismatch",
            )
        return str(algorithm)

    def _check_key(self, key: TrustedKey, system_id: str, method: str) -> None:
        if key.system_id != system_id:
            raise _invalid(
                f"the request is signed by {key.system_id} but the caller authenticated as "
                f"{system_id}; a system signs only its own requests",
                "client.signer_mismatch",
            )
        pinned = _METHODS.get(key.alg)
        if pinned is None:
            raise _invalid(
                f"the key {key.kid} of {key.system_id} is pinned to {key.alg}, which XML-DSig "
                "here does not support; sign SOAP requests with an RSA (or EC P-256) key",
                "client.algorithm_mismatch",
            )
        if method != pinned:
            raise _invalid(
                f"the signature uses {method} but the key {key.kid} of {key.system_id} is "
                f"pinned to {key.alg} ({pinned}); sign with that method",
                "client.algorithm_mismatch",
            )
        now = self.clock()
        if now < key.valid_from:
            raise _invalid(
                f"the certificate of {key.system_id} (kid {key.kid}) is not valid before "
                f"{_when(key.valid_from)}; check the signer's clock or its certificate",
                "client.certificate_expired",
            )
        if now >= key.valid_until:
            raise _invalid(
                f"the certificate of {key.system_id} (kid {key.kid}) expired on "
                f"{_when(key.valid_until)}; renew it and add it to the trust store",
                "client.certificate_expired",
            )

    @staticmethod
    def _check_signature(payload: etree._Element, signature: etree._Element,
                         reference: etree._Element, key: TrustedKey, method: str) -> Checked:
        try:
            return check_enveloped(payload, signature, reference, key.public_key, method)
        except SignatureRefused as exc:
            raise _invalid(
                f"the signature does not verify ({exc}): the request was changed after "
                f"signing, or not signed by the key of {key.system_id} (kid {key.kid})",
                "client.bad_signature",
            ) from None


def covered_reference(payload: etree._Element, signature: etree._Element) -> etree._Element:
    """The signature's only Reference, which must name ``payload`` itself by its Id: a
    signature over some other element (or over part of this one) proves nothing about it."""
    own_id = payload.get("Id")
    references = signature.findall("ds:SignedInfo/ds:Reference", namespaces=_DS)
    if not own_id:
        raise _invalid(
            "the request element has no Id attribute, so the signature cannot point at it; "
            "set Id on the request element and sign with Reference URI=\"#<Id>\"",
            "client.bad_signature",
        )
    if len(references) != 1 or references[0].get("URI") != f"#{own_id}":
        uris = [r.get("URI") for r in references]
        raise _invalid(
            f"the signature's references {uris} do not name the request element; sign "
            f"exactly one reference, URI=\"#{own_id}\" (its Id), with the "
            "enveloped-signature transform",
            "client.bad_signature",
        )
    return references[0]


def sign_element(element: etree._Element,
                 key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
                 certificate: x509.Certificate, *, element_id: str | None = None
                 ) -> etree._Element:
    """``element``, signed in place (``Id`` set to ``element_id`` if given): enveloped
    signature as its last child, RSA-SHA256 (ECDSA-SHA256 for an EC key), exclusive C14N,
    the certificate in KeyInfo."""
    if element_id is not None:
        element.set("Id", element_id)
    return sign_enveloped(element, key, certificate)


def _last_child(element: etree._Element) -> etree._Element | None:
    for child in reversed(element):
        if isinstance(child.tag, str):
            return child
    return None


class ResponseSigner:
    """Signs the hub's response elements with its RSA key (RSA-SHA256, exclusive C14N,
    enveloped, certificate in KeyInfo)."""

    def __init__(self, private_key: rsa.RSAPrivateKey, certificate: x509.Certificate) -> None:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ConfigError("the SOAP response signer needs an RSA key (RSA-SHA256)")
        self.private_key = private_key
        self.certificate = certificate
        self.system_id = system_id_of(certificate)
        self.kid = kid_of(certificate)
        self._certificate_der = certificate.public_bytes(Encoding.DER)

    @classmethod
    def load(cls, keys_dir: Path, system_id: str) -> ResponseSigner:
        """The key and certificate of ``system_id`` in ``keys_dir`` (``hub.signing.keys``
        layout), which must be RSA."""
        files = KeyFiles.of(keys_dir, system_id)
        create = f"lienthong keys generate --system {system_id} --alg RS256"
        if not files.key.exists():
            raise ConfigError(
                f"the hub signs its SOAP responses with the RSA key of {system_id}, and there "
                f"is none at {files.key}; create it with `{create}`", field="system_id")
        key = load_private_key(files.key)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError(
                f"the key of {system_id} at {files.key} is not RSA; SOAP responses are signed "
                f"RSA-SHA256: replace it with an RSA key, `{create} --force`", field="system_id")
        return cls(key, load_certificate(files.certificate))

    def sign(self, element: etree._Element) -> bytes:
        """``element`` (with an Id attribute) serialised with its signature as last child."""
        out: bytes = etree.tostring(
            sign_enveloped(element, self.private_key, self._certificate_der))
        return out
