"""The SOAP entry point for upstream systems: the same intake as REST, over SOAP 1.1 and 1.2.

Contract first: ``schemas/soap/intake.wsdl`` and ``intake.xsd`` (document/literal wrapped,
namespace ``urn:lienthong:hub:v1``, operations SubmitDossier, ReportStatus, ReportProgress),
served at ``/soap/v1?wsdl`` and ``/soap/v1?xsd=intake.xsd``; requests are POSTed to
``/soap/v1``. The WSDL names the service at ``Settings.public_url`` + ``/soap/v1`` (unset: the
address the connection arrived on; never the request's Host header).

The app factory mounts it with::

    from hub.api import soap
    app.include_router(soap.router(settings, intake, registry, limiter=ctx.limiter))

The hub signs its SOAP answers with an RSA key of its own (``response_signer_id``: the system
id ``<hub_id>-soap``), made once with
``lienthong keys generate --system <hub_id>-soap --alg RS256``; tests pass ``signer=``.

Modules: ``parser`` (hardened XML parsing), ``envelope`` (SOAP 1.1 / 1.2), ``faults``,
``contract`` (WSDL/XSD), ``dispatch`` (operations), ``mapping`` (XML -> canonical dict),
``dsig`` (XML-DSig verify/sign), ``freshness`` (the signed createdAt against the age window),
``service`` (the pipeline), ``routes`` (FastAPI). The client side (a zeep plugin that signs
requests and checks the hub's answers), which tests and the demo use, is ``hub.testing.soap``.
"""

from __future__ import annotations

from fastapi import APIRouter

from hub.api.soap.contract import Contract
from hub.api.soap.dsig import RequestVerifier, ResponseSigner
from hub.api.soap.freshness import AgeWindow
from hub.api.soap.parser import MAX_DEPTH
from hub.api.soap.routes import build_router
from hub.api.soap.service import Intake, Limiter, Registry, SoapService
from hub.settings import Settings
from hub.signing.truststore import TrustStore

PATH = "/soap/v1"
# The hub signs SOAP responses RSA-SHA256 with a key of its own, apart from its JWS key (ES256
# by default, far cheaper per message): the key of the system id ``<hub_id>-soap``.
SIGNER_SUFFIX = "-soap"


def response_signer_id(settings: Settings) -> str:
    return settings.hub_id + SIGNER_SUFFIX


def router(
    settings: Settings,
    intake: Intake,
    registry: Registry,
    *,
    signer: ResponseSigner | None = None,
    trust: TrustStore | None = None,
    limiter: Limiter | None = None,
    max_depth: int = MAX_DEPTH,
) -> APIRouter:
    """The SOAP routes at ``/soap/v1``. Without ``signer`` the hub's SOAP key is read from
    ``settings.keys_dir`` (system id ``response_signer_id(settings)``, RSA); without ``trust``
    the trust store is ``settings.trust_dir``; ``limiter`` is the per-client rate limiter the
    REST routes use (shared, so SOAP and REST draw on one budget)."""
    service = SoapService(
        contract=Contract(settings.schemas_dir / "soap"),
        intake=intake,
        registry=registry,
        verifier=RequestVerifier(trust if trust is not None else TrustStore(settings.trust_dir)),
        window=AgeWindow.from_settings(settings),
        signer=signer or ResponseSigner.load(settings.keys_dir, response_signer_id(settings)),
        max_body_bytes=settings.max_body_bytes,
        max_depth=max_depth,
        limiter=limiter,
    )
    return build_router(service, path=PATH, timeout=settings.request_timeout,
                        public_url=settings.public_url)


__all__ = ["PATH", "ResponseSigner", "SoapService", "response_signer_id", "router"]
