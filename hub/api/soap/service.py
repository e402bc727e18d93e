"""The SOAP intake pipeline, free of any web framework: HTTP headers and body bytes in, status,
content type and body bytes out.

    negotiate the version (Content-Type, SOAPAction)  -> 415 fault if not SOAP
    authenticate the caller (HTTP headers)             -> client.unauthenticated
    [rate limit per client]                            -> client.rate_limited
    parse, hardened (size, DTD, entities, depth)       -> client.body_too_large,
                                                          client.dtd_forbidden,
                                                          client.unparseable, client.too_deep
    open the envelope (version, Body, mustUnderstand)  -> VersionMismatch, MustUnderstand,
                                                          client.envelope_invalid
    dispatch on the request element (and the action)  -> client.unknown_operation,
                                                          client.action_mismatch
    validate against the XSD                           -> client.schema_invalid
    verify the enveloped XML-DSig                      -> client.missing_signature,
                                                          client.bad_signature, ...
    check the signed createdAt against the age window  -> client.stale_message
    read the canonical dict, intake.accept(...)        -> whatever the intake refuses
    answer <Op>Response(messageId, duplicate), signed by the hub

An exact resend within the age window is answered as the first time by its idempotency key
(the client's, or the one the signature implies: both are signed content, so another key is
another signed request, see ``freshness``); after the window it is stale.

Nothing is written before ``accept``, and ``accept`` writes everything in one transaction, so
a request refused at any step leaves no trace in the store. Every refusal is a fault in the
version the request announced (``faults``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from lxml import etree

from hub.api.metrics import note_refusal
from hub.api.soap.contract import NS, Contract
from hub.api.soap.dispatch import Operation, dispatch
from hub.api.soap.dsig import RequestVerifier, ResponseSigner
from hub.api.soap.envelope import SOAP11, Announced, SoapVersion, negotiate, open_envelope, wrap
from hub.api.soap.faults import fault_envelope, fault_headers, http_status
from hub.api.soap.freshness import AgeWindow, missing_created_at
from hub.api.soap.mapping import created_at
from hub.api.soap.parser import MAX_DEPTH, parse_document
from hub.errors import HubError, ValidationError

log = logging.getLogger(__name__)

RESPONSE_ID = "response"
# The REST spelling of the idempotency key's field, as the intake names it in its errors.
_IDEMPOTENCY_FIELD = "Idempotency-Key"


class Accepted(Protocol):
    @property
    def message_id(self) -> str: ...

    @property
    def duplicate(self) -> bool: ...


class Intake(Protocol):
    """``hub.intake.service.IntakeService``. When it also has ``accept_async`` (same arguments,
    awaitable), the HTTP layer awaits the commit instead of blocking a thread on it."""

    def accept(self, client: Any, event_type: str, data: dict[str, Any], *,
               idempotency_key: str | None, upstream_proof: str | None) -> Accepted: ...


class Registry(Protocol):
    """``hub.api.auth.ClientRegistry``."""

    def authenticate(self, headers: Mapping[str, str]) -> Any: ...


class Limiter(Protocol):
    """``hub.api.limits.RateLimiter``."""

    def check(self, key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request that passed every check, ready for the intake."""

    version: SoapVersion
    op: Operation
    client: Any
    data: dict[str, Any]
    idempotency_key: str
    upstream_proof: str
    created_at: datetime  # signed by the sender, checked against the age window


@dataclass(frozen=True, slots=True)
class SoapReply:
    status: int
    content_type: str
    body: bytes
    # More HTTP headers of the answer (a rate-limit fault's Retry-After), lower-case names.
    headers: tuple[tuple[bytes, bytes], ...] = ()


class SoapService:
    def __init__(
        self,
        *,
        contract: Contract,
        intake: Intake,
        registry: Registry,
        verifier: RequestVerifier,
        window: AgeWindow,
        signer: ResponseSigner,
        max_body_bytes: int,
        max_depth: int = MAX_DEPTH,
        limiter: Limiter | None = None,
    ) -> None:
        self.contract = contract
        self.intake = intake
        self.registry = registry
        self.verifier = verifier
        self.window = window
        self.signer = signer
        self.max_body_bytes = max_body_bytes
        self.max_depth = max_depth
        self.limiter = limiter

    def announced(self, headers: Mapping[str, str]) -> Announced:
        return negotiate(headers.get("content-type"), headers.get("soapaction"))

    def handle(self, headers: Mapping[str, str], body: bytes) -> SoapReply:
        """The whole pipeline in the calling thread; never raises: every refusal is a fault
        reply. (The HTTP layer runs the same steps, ``prepare``, the intake, ``finish``, but
        waits for the intake's commit without holding a thread.)"""
        prepared = self.prepare(headers, body)
        if isinstance(prepared, SoapReply):
            return prepared
        try:
            accepted: Accepted | Exception = self.intake.accept(
                prepared.client, prepared.op.event_type, prepared.data,
                idempotency_key=prepared.idempotency_key,
                upstream_proof=prepared.upstream_proof)
        except Exception as exc:
            accepted = exc
        return self.finish(prepared, accepted)

    def prepare(self, headers: Mapping[str, str], body: bytes) -> Prepared | SoapReply:
        """Every step before the intake: what to hand it, or the fault that refuses the
        request."""
        try:
            announced = self.announced(headers)
        except HubError as exc:
            return self.fault(SOAP11, exc)
        op: Operation | None = None
        try:
            client = self.registry.authenticate(headers)
            if self.limiter is not None:
                self.limiter.check(client.system_id)
            root = parse_document(body, max_bytes=self.max_body_bytes, max_depth=self.max_depth)
            payload = open_envelope(root, announced.version).payload
            op = dispatch(payload, announced.action, announced.action_field)
            try:
                self.contract.validate(payload)
            except ValidationError:
                lacking = missing_created_at(payload)
                if lacking is None:
                    raise
                raise lacking from None
            proof = self.verifier.verify(payload, client.system_id)
            # After the signature: the time judged is the one the sender signed.
            created = created_at(payload)
            self.window.check(created)
            data_element = payload.find(op.data_tag)
            assert data_element is not None  # the XSD requires it
            key = payload.findtext(f"{{{NS}}}idempotencyKey")
            return Prepared(
                version=announced.version,
                op=op,
                client=client,
                data=op.shape.read(data_element),
                idempotency_key=key if key is not None else proof.idempotency_key(),
                upstream_proof=proof.header(),
                created_at=created,
            )
        except Exception as exc:
            return self.failed(announced.version, op, exc)

    def finish(self, prepared: Prepared, outcome: Accepted | Exception) -> SoapReply:
        """The answer once the intake has spoken: the signed response, or its refusal."""
        if isinstance(outcome, Exception):
            return self.failed(prepared.version, prepared.op, outcome)
        try:
            return self.answer(prepared.version, prepared.op, outcome)
        except Exception as exc:
            return self.failed(prepared.version, prepared.op, exc)

    def failed(self, version: SoapVersion, op: Operation | None, error: Exception) -> SoapReply:
        if isinstance(error, HubError):
            return self.fault(version, _in_xml_terms(error, op))
        log.error("SOAP request failed unexpectedly", exc_info=error)
        return self.fault(version, HubError(
            "the hub failed while handling the request; send the same request again: if it "
            "was kept, the answer names the message id with duplicate=true"))

    def refuse(self, headers: Mapping[str, str], error: HubError) -> SoapReply:
        """A fault for a request refused before the pipeline ran (by the HTTP layer: a body
        too large, a timeout), in the version the request announced if it announced one."""
        try:
            version = self.announced(headers).version
        except HubError:
            version = SOAP11
        return self.fault(version, error)

    def fault(self, version: SoapVersion, error: HubError) -> SoapReply:
        # Code and field only: messages may quote what was sent (an identity number...), and
        # citizens' data never goes to the log in clear.
        log.info("SOAP %s fault %s (field %s)", version.label, error.code, error.field)
        note_refusal(error)  # counted and logged with the caller's address (hub.api.metrics)
        return SoapReply(http_status(version, error), version.content_type,
                         fault_envelope(version, error), fault_headers(error))

    def answer(self, version: SoapVersion, op: Operation, accepted: Accepted) -> SoapReply:
        response = etree.Element(op.response_tag, nsmap={"lt": NS}, Id=RESPONSE_ID)
        etree.SubElement(response, f"{{{NS}}}messageId").text = accepted.message_id
        etree.SubElement(response, f"{{{NS}}}duplicate").text = (
            "true" if accepted.duplicate else "false")
        return SoapReply(200, version.content_type, wrap(version, self.signer.sign(response)))


def _in_xml_terms(error: HubError, op: Operation | None) -> HubError:
    """Name the field as the sender wrote it: the canonical model's ``applicant.identity_number``
    becomes ``dossier/applicant/identityNumber``."""
    field = error.field
    if field is None or op is None:
        return error
    if field == _IDEMPOTENCY_FIELD:
        error.field = "idempotencyKey"
        return error
    path = op.shape.xml_path(field)
    if path is not None:
        error.field = f"{op.data}/{path}"
    return error
