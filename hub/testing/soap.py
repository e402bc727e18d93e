"""The client side of the hub's SOAP signatures, as a zeep plugin: an upstream system (or a test)
signs each request element the way the hub verifies it, and checks the hub's signature on the
answer.

    client = zeep.Client(f"{hub}/soap/v1?wsdl", transport=transport,
                         plugins=[SigningPlugin(key, certificate, hub_certificate=hub_cert)])
    client.service.SubmitDossier(createdAt=datetime.now(UTC), dossier={...})

``createdAt`` is the signing time the hub checks against its age window (5 minutes by
default): pass the time of the call; after the window, make the request again rather than
resend its bytes. zeep builds the envelope; ``egress`` sets ``Id`` on the Body's element and
signs it in place (enveloped XML-DSig, RSA-SHA256, exclusive C14N, certificate in KeyInfo);
``ingress`` verifies the response element's signature against the hub's certificate and
raises ``zeep.exceptions.SignatureVerificationFailed`` when it does not hold.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from zeep import Plugin
from zeep.exceptions import SignatureVerificationFailed

from hub.api.soap.dsig import SIGNATURE_TAG, covered_reference, sign_element
from hub.api.soap.envelope import SOAP11_NS, SOAP12_NS
from hub.api.soap.xmldsig import RSA_SHA256, SignatureRefused, check_enveloped
from hub.errors import HubError

REQUEST_ID = "request"


def body_element(envelope: etree._Element) -> tuple[etree._Element, etree._Element] | None:
    """The SOAP Body of ``envelope`` (1.1 or 1.2) and its first element child."""
    for ns in (SOAP11_NS, SOAP12_NS):
        body = envelope.find(f"{{{ns}}}Body")
        if body is not None:
            child = next((c for c in body if isinstance(c.tag, str)), None)
            return (body, child) if child is not None else None
    return None


class SigningPlugin(Plugin):
    def __init__(
        self,
        private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        certificate: x509.Certificate,
        *,
        hub_certificate: x509.Certificate | None = None,
    ) -> None:
        self.private_key = private_key
        self.certificate = certificate
        self.hub_certificate = hub_certificate

    def egress(self, envelope: etree._Element, http_headers: dict[str, str], operation: Any,
               binding_options: Any) -> tuple[etree._Element, dict[str, str]]:
        found = body_element(envelope)
        if found is not None:
            _, payload = found
            sign_element(payload, self.private_key, self.certificate, element_id=REQUEST_ID)
        return envelope, http_headers

    def ingress(self, envelope: etree._Element, http_headers: Any,
                operation: Any) -> tuple[etree._Element, Any]:
        found = body_element(envelope)
        if self.hub_certificate is None or found is None:
            return envelope, http_headers
        _, payload = found
        if etree.QName(payload).localname == "Fault":
            return envelope, http_headers  # the hub does not sign faults
        signature = payload[-1] if len(payload) else None
        if signature is None or signature.tag != SIGNATURE_TAG:
            raise _failed("the hub's response is not signed")
        try:
            reference = covered_reference(payload, signature)
            check_enveloped(payload, signature, reference, self.hub_certificate.public_key(),
                            RSA_SHA256)
        except (HubError, SignatureRefused) as exc:
            raise _failed(f"the hub's response signature does not verify: {exc}") from None
        return envelope, http_headers


def _failed(message: str) -> SignatureVerificationFailed:
    error: SignatureVerificationFailed = SignatureVerificationFailed(  # type: ignore[no-untyped-call]
        message)
    return error
