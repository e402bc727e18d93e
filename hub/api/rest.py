"""The REST routes (``/v1/...``). Each route only turns the HTTP request into a call of the
intake service (or the store, for reading) and its answer into JSON; refusals are
``HubError``s that ``hub.api.problems`` renders.

Pipeline of a write: authenticate -> rate limit -> read the body (size-limited by middleware)
-> verify the upstream's detached JWS over the exact bytes -> parse JSON -> validate, authorize,
keep (``IntakeService.accept``) -> 202 with the message id.

Authorization is by the client's access list: the event type, and the agency the event is for.
That agency is the body's ``agency_code`` or, without one, the agency of its dossier code. Two
routes need more: a payment names the collecting agency in its body, so the dossier of the path
is authorized too; a citizen verification may name no dossier at all, and is then authorized
for the agency of the client's own system id (``VN:GOV:<agency code>:<system>``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from hub import codes
from hub.api.auth import ClientRegistry, OAuthError
from hub.api.callbacks import CallbackDispatcher, check_agencies
from hub.api.errors import UnsupportedMediaType
from hub.api.limits import RateLimiter
from hub.api.metrics import Metrics
from hub.api.openapi import (
    BUSY,
    CONNECTION_PROBLEMS,
    METHOD_NOT_ALLOWED,
    PROBLEMS,
    contract_ref,
    json_body,
    problem,
)
from hub.errors import AccessDenied, ValidationError
from hub.intake.access import ClientIdentity, authorize_agency, authorize_type
from hub.intake.idempotency import IDEMPOTENCY_HEADER, check_idempotency_key
from hub.intake.service import IntakeService
from hub.jsonbody import parse_object
from hub.settings import Settings
from hub.store import Store

SIGNATURE_HEADER = "X-Signature"
SUBMITTED = "vn.gov.dossier.submitted"
STATUS_CHANGED = "vn.gov.dossier.status-changed"
PROGRESS_REPORTED = "vn.gov.dossier.progress-reported"
PAYMENT_REQUESTED = "vn.gov.payment.requested"
POSTAL_PICKUP_REQUESTED = "vn.gov.postal.pickup-requested"
VERIFICATION_REQUESTED = "vn.gov.citizen.verification-requested"

# Checks a route adds to the intake's own, once the body is parsed: given the client, the event
# type and the body, refuse or return the identity the intake is to authorize the event for.
Authorize = Callable[[ClientIdentity, str, dict[str, Any]], ClientIdentity]


@dataclass
class ApiContext:
    """What the routes use; built by ``hub.api.app.create_app``."""

    settings: Settings
    store: Store
    registry: ClientRegistry
    intake: IntakeService
    limiter: RateLimiter
    metrics: Metrics
    callbacks: CallbackDispatcher
    broker_ready: Callable[[], bool]


# -- OpenAPI fragments (the bodies are read raw, so FastAPI is told what they are: the contract
# files, see hub.api.openapi) --------------------------------------------------------------------

# Printable ASCII, no blank at either end (HTTP strips those): what check_idempotency_key takes
# of what a header can carry (RFC 9110 leaves other octets obsolete).
IDEMPOTENCY_KEY_PATTERN = r"^[!-~](?:[ -~]*[!-~])?$"
# A dossier code in a path is read as the contracts' DossierCode (the component itself, so the
# document has one pattern for it). FastAPI's own parameter is left out of the document
# (``PathCode``): it would say only "string".
_CODE_PARAMETER: dict[str, Any] = {
    "name": "code", "in": "path", "required": True,
    "description": "the dossier's code; anything else is 422 client.bad_code",
    "schema": contract_ref("dossier-submission", "DossierCode"),
}
PathCode = Annotated[str, Path(include_in_schema=False)]
# Open to anyone: probes and scrapers carry no credentials.
_OPEN: dict[str, Any] = {"security": []}


def _json_body(contract: str, description: str, *, path_code: bool = False) -> dict[str, Any]:
    return {
        "requestBody": {"required": True, **json_body(contract), "description": (
            f"{description}; its dossier_code is required and must be the path's code "
            "(422 client.schema_invalid, field dossier_code, otherwise): the signature covers "
            "the body, not the path" if path_code else description)},
        "parameters": [
            *([_CODE_PARAMETER] if path_code else []),
            {"name": SIGNATURE_HEADER, "in": "header", "required": True,
             "description": "detached compact JWS (RFC 7515/7797) over the exact body bytes, "
                            "made by the client's key; protected header lt-id (request id), "
                            "lt-type (the event type of this path), lt-src (the client's system "
                            "id)",
             "schema": {"type": "string"}},
            {"name": IDEMPOTENCY_HEADER, "in": "header", "required": False,
             "description": "the same key with the same body gives the same answer and one "
                            "message; with another body, 409. Without it, an exact resend "
                            "(same bytes, same signature) is recognised by the signature's "
                            "lt-id",
             "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                        "pattern": IDEMPOTENCY_KEY_PATTERN}},
        ],
    }


_INTAKE_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "kept in the outbox; will be published", **json_body("accepted")},
    **PROBLEMS,
    415: problem("the body is not JSON (client.unsupported_media_type); send "
                 "application/json"),
}


def build_router(ctx: ApiContext) -> tuple[APIRouter, list[BaseRoute]]:
    """The routes (FastAPI's, which the OpenAPI document describes), and the intake routes
    once more as plain ASGI routes, which answer: the app puts those on its own router, first
    (``hub.api.app.create_app``)."""
    router = APIRouter()

    def client_of(request: Request) -> ClientIdentity:
        client = ctx.registry.authenticate(request.headers)
        ctx.limiter.check(client.system_id)
        return client

    async def intake(request: Request, client: ClientIdentity, event_type: str,
                     path_code: str | None, authorize: Authorize | None = None) -> Response:
        _check_json(request)
        started = time.perf_counter()
        # An empty key is refused, as the contract says (minLength 1), not taken for none.
        key = _idempotency_key(request.headers.get(IDEMPOTENCY_HEADER))
        body = await request.body()
        token = request.headers.get(SIGNATURE_HEADER)
        # Verification and validation are CPU work of a few hundred microseconds: done here,
        # on the event loop (a thread hop would cost as much and buy no parallelism); only
        # the store write waits, without holding a thread, for the group commit.
        signed = ctx.intake.verify_request(client, event_type, body, token, path_code or "-",
                                           header_name=SIGNATURE_HEADER)
        data = parse_object(body, max_depth=ctx.settings.max_json_depth)
        if path_code is not None:
            data = _with_path_code(data, path_code)
        if authorize is not None:
            client = authorize(client, event_type, data)
        ctx.metrics.intake_stage("check", time.perf_counter() - started)
        accepted = await ctx.intake.accept_async(
            client, event_type, data,
            idempotency_key=key if key is not None else f"request:{signed.id}",
            upstream_proof=token, replay_key=signed.replay_key)
        ctx.metrics.intake_seconds.labels(event_type).observe(time.perf_counter() - started)
        return Response(
            json.dumps({"message_id": accepted.message_id,
                        "duplicate": accepted.duplicate}).encode(),
            status_code=202, media_type="application/json")

    @router.post(
        "/v1/dossiers", status_code=202, responses=_INTAKE_RESPONSES,
        summary="Submit a dossier", tags=["dossiers"],
        openapi_extra=_json_body("dossier-submission", "the dossier, canonical model "
                                 "(schemas/api/dossier-submission.schema.json)"),
    )
    async def submit_dossier(request: Request) -> Response:
        return await intake(request, client_of(request), SUBMITTED, None)

    @router.post(
        "/v1/dossiers/{code}/status", status_code=202,
        responses=_INTAKE_RESPONSES,
        summary="Report a status change of a dossier", tags=["dossiers"],
        openapi_extra=_json_body("status-change", "schemas/api/status-change.schema.json",
                                 path_code=True),
    )
    async def report_status(code: PathCode, request: Request) -> Response:
        client = client_of(request)
        return await intake(request, client, STATUS_CHANGED, _path_code(code))

    @router.post(
        "/v1/dossiers/{code}/progress", status_code=202,
        responses=_INTAKE_RESPONSES,
        summary="Report a processing step of a dossier", tags=["dossiers"],
        openapi_extra=_json_body("progress-step", "schemas/api/progress-step.schema.json",
                                 path_code=True),
    )
    async def report_progress(code: PathCode, request: Request) -> Response:
        client = client_of(request)
        return await intake(request, client, PROGRESS_REPORTED, _path_code(code))

    @router.post(
        "/v1/dossiers/{code}/payments", status_code=202,
        responses=_INTAKE_RESPONSES,
        summary="Request the online payment of a dossier's fees", tags=["dossiers"],
        openapi_extra=_json_body("payment-request", "schemas/api/payment-request.schema.json",
                                 path_code=True),
    )
    async def request_payment(code: PathCode, request: Request) -> Response:
        client = client_of(request)
        path_code = _path_code(code)
        return await intake(request, client, PAYMENT_REQUESTED, path_code,
                            _dossier_agency(path_code))

    @router.post(
        "/v1/dossiers/{code}/postal-orders", status_code=202,
        responses=_INTAKE_RESPONSES,
        summary="Order a postal pickup or return of a dossier", tags=["dossiers"],
        openapi_extra=_json_body("postal-order", "schemas/api/postal-order.schema.json",
                                 path_code=True),
    )
    async def order_postal(code: PathCode, request: Request) -> Response:
        client = client_of(request)
        return await intake(request, client, POSTAL_PICKUP_REQUESTED, _path_code(code))

    @router.post(
        "/v1/citizens/verifications", status_code=202,
        responses=_INTAKE_RESPONSES,
        summary="Verify a citizen against the population database", tags=["citizens"],
        openapi_extra=_json_body("citizen-verification",
                                 "schemas/api/citizen-verification.schema.json; the answer "
                                 "is the event vn.gov.citizen.verified"),
    )
    async def verify_citizen(request: Request) -> Response:
        return await intake(request, client_of(request), VERIFICATION_REQUESTED, None,
                            _verification_agency)

    @router.get(
        "/v1/dossiers/{code}/timeline",
        responses={200: {"description": "the dossier's events, oldest first",
                         **json_body("timeline")}, **PROBLEMS},
        summary="Every event of a dossier", tags=["dossiers"],
        openapi_extra={"parameters": [_CODE_PARAMETER]},
    )
    async def timeline(code: PathCode, request: Request) -> Response:
        client = client_of(request)
        dossier = codes.parse_dossier(code, "code")
        authorize_agency(client, dossier.agency.value, field="code")
        entries = await asyncio.to_thread(ctx.store.timeline, dossier.value)
        return JSONResponse({
            "dossier_code": dossier.value,
            "entries": [{"message_id": e.message_id, "event_type": e.event_type,
                         "at": e.at.isoformat(), "source": e.source, "summary": e.summary}
                        for e in entries],
        })

    @router.post(
        "/v1/oauth/token",
        responses={200: {"description": "an access token", **json_body("token")}, **PROBLEMS},
        summary="OAuth2 client credentials grant (RFC 6749 section 4.4)", tags=["auth"],
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/x-www-form-urlencoded": {"schema": {
                "type": "object", "required": ["grant_type"],
                "properties": {"grant_type": {"type": "string", "enum": ["client_credentials"]},
                               "client_id": {"type": "string"},
                               "client_secret": {"type": "string"}}}}}}},
    )
    async def token(request: Request) -> Response:
        form = _form(await request.body())
        client_id, secret = _client_credentials(request, form)
        ctx.limiter.check(f"token:{client_id}")
        grant_type = form.get("grant_type")
        if grant_type != "client_credentials":
            raise OAuthError(
                f"grant_type {grant_type!r:.40} is not supported; send "
                "grant_type=client_credentials", code="client.unsupported_grant_type",
                oauth_error="unsupported_grant_type", http_status=400, field="grant_type")
        grant = await asyncio.to_thread(ctx.registry.issue_token, client_id, secret)
        return JSONResponse(grant.to_dict(), headers={"Cache-Control": "no-store",
                                                      "Pragma": "no-cache"})

    @router.post(
        "/v1/callbacks/{system}", status_code=202,
        responses={202: {"description": "kept", **json_body("callback-accepted")},
                   **PROBLEMS},
        summary="Inbound call of an external system, parsed by its adapter", tags=["callbacks"],
        description="The caller authenticates as a client of the hub allowed this system's "
                    "callback (API key, bearer token or client certificate; the envelopes "
                    "the call makes must be for agencies it may act for), unless the system's "
                    "adapter checks a proof its calls carry (a checksum, a token): that door "
                    "stays shut (503 server.secret_missing) until its secret is configured.",
        openapi_extra={"requestBody": {"required": True, "description": "the system's own "
                       "format; its adapter checks it (checksum, signature)",
                       "content": {"*/*": {"schema": {}}}}},
    )
    async def callback(system: str, request: Request) -> Response:
        # Who calls, before a byte of the body is read: unknown system 404, no credentials
        # 401, not allowed 403, a secret not configured 503.
        admitted = ctx.callbacks.admit(system, request.headers, ctx.registry)
        ctx.limiter.check(admitted.limit_key)
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        envelopes = await ctx.callbacks.parse(system, body, headers)
        check_agencies(admitted, envelopes)  # refused: nothing of the call is kept
        ids = await asyncio.to_thread(ctx.intake.accept_envelopes, f"system:{system}",
                                      envelopes)
        return JSONResponse({"message_ids": ids}, status_code=202)

    @router.get("/healthz", tags=["operations"], summary="The process is alive",
                response_model=None, openapi_extra=_OPEN,
                responses={200: {"description": "alive", **json_body("health")},
                           405: METHOD_NOT_ALLOWED, **CONNECTION_PROBLEMS})
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @router.get("/readyz", tags=["operations"],
                summary="The store and the broker are reachable (and what operators watch: the "
                "keeper, circuits, certificates)", openapi_extra=_OPEN,
                responses={200: {"description": "ready", **json_body("readiness")},
                           503: {"description": "not ready: a check says what is wrong",
                                 **json_body("readiness")},
                           405: METHOD_NOT_ALLOWED, **CONNECTION_PROBLEMS})
    async def readyz(request: Request) -> Response:
        checks = {"store": await asyncio.to_thread(_store_check, ctx.store),
                  "broker": "ok" if ctx.broker_ready() else "not connected"}
        ready = all(v == "ok" for v in checks.values())
        # Checks that inform operators without taking this process out of service: the
        # dead-letter keeper, each circuit, each certificate (hub.console.health).
        extra = getattr(request.app.state, "readiness_extra", None)
        if extra is not None:
            checks.update(await asyncio.to_thread(extra))
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                            status_code=200 if ready else 503)

    @router.get("/metrics", tags=["operations"], summary="Prometheus metrics",
                response_class=PlainTextResponse, openapi_extra=_OPEN,
                responses={200: {"description": "Prometheus text exposition format 0.0.4 "
                                                "or 1.0.0",
                                 "content": {"text/plain": {"schema": {"type": "string"}}}},
                           405: METHOD_NOT_ALLOWED, **CONNECTION_PROBLEMS})
    async def metrics() -> Response:
        payload, content_type = await asyncio.to_thread(ctx.metrics.render)
        return Response(payload, media_type=content_type)

    # The ministries' contract (hub.subscriptions.asyncapi), generated from the live
    # configuration at each request: open, as the OpenAPI document is.
    @router.get("/asyncapi.json", tags=["operations"], openapi_extra=_OPEN,
                summary="AsyncAPI 3.0 document of the events and ministries' subscriptions",
                response_class=JSONResponse,
                responses={200: {"description": "the AsyncAPI 3.0 document",
                                 "content": {"application/json": {"schema": {
                                     "type": "object"}}}},
                           405: METHOD_NOT_ALLOWED, 503: BUSY,
                           **CONNECTION_PROBLEMS})
    async def asyncapi_json() -> Response:
        from hub.subscriptions.asyncapi import document

        doc = await asyncio.to_thread(document, ctx.settings, ctx.store)
        return JSONResponse(doc)

    @router.get("/asyncapi.yaml", tags=["operations"], openapi_extra=_OPEN,
                summary="The AsyncAPI 3.0 document, as YAML", response_class=PlainTextResponse,
                responses={200: {"description": "the AsyncAPI 3.0 document",
                                 # The YAML text is the same object as the JSON one.
                                 "content": {"application/yaml": {"schema": {
                                     "type": "object"}}}},
                           405: METHOD_NOT_ALLOWED, 503: BUSY,
                           **CONNECTION_PROBLEMS})
    async def asyncapi_yaml() -> Response:
        from hub.subscriptions.asyncapi import document, to_yaml

        doc = await asyncio.to_thread(document, ctx.settings, ctx.store)
        return Response(to_yaml(doc), media_type="application/yaml")

    # The intake routes once more as plain ASGI endpoints, placed first so that they answer:
    # they take nothing but the raw request, and FastAPI's per-request machinery (dependency
    # solving, exit stacks, its request handler, an included router's own dispatch) is a cost
    # on the event loop they do without (see docs/performance.md#plain-asgi-routes). The
    # FastAPI routes above describe them in the OpenAPI document; both call the same handlers,
    # and errors reach the same handlers (hub.api.problems) through the app's exception
    # middleware.
    def code_of(handle: Callable[[str, Request], Awaitable[Response]]) -> Handler:
        return lambda request: handle(request.path_params["code"], request)

    plain: list[BaseRoute] = [
        Route(path, _PlainEndpoint(path, handle), methods=["POST"], include_in_schema=False)
        for path, handle in (
            ("/v1/dossiers", submit_dossier),
            ("/v1/dossiers/{code}/status", code_of(report_status)),
            ("/v1/dossiers/{code}/progress", code_of(report_progress)),
            ("/v1/dossiers/{code}/payments", code_of(request_payment)),
            ("/v1/dossiers/{code}/postal-orders", code_of(order_postal)),
            ("/v1/citizens/verifications", verify_citizen),
        )
    ]
    return router, plain


Handler = Callable[[Request], Awaitable[Response]]


class _PlainEndpoint:
    """An ASGI app calling ``handle`` with the request and sending its response. It names
    itself in the scope as FastAPI's routes do (``scope["route"]``, with the route's ``path``
    template), for the metrics (hub.api.metrics)."""

    def __init__(self, path: str, handle: Handler) -> None:
        self.path = path
        self.handle = handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)


def _check_json(request: Request) -> None:
    ctype = request.headers.get("content-type")
    if ctype is None:
        return
    media = ctype.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type {media!r:.60} is not JSON; send "
                                   "application/json", field="Content-Type")


def _idempotency_key(value: str | None) -> str | None:
    if value is not None and not value.isascii():
        raise ValidationError("must be 1 to 255 printable ASCII characters (a UUID is a good "
                              "choice), got a character beyond ASCII", field=IDEMPOTENCY_HEADER)
    return check_idempotency_key(value)


def _path_code(code: str) -> str:
    return codes.parse_dossier(code, "code").value


def _dossier_agency(code: str) -> Authorize:
    """The client must act for the agency of the path's dossier, whatever agency the body
    names (a payment's ``agency_code`` is the collecting agency, which the intake checks)."""
    agency = codes.parse_dossier(code, "code").agency.value

    def check(client: ClientIdentity, event_type: str, data: dict[str, Any]) -> ClientIdentity:
        # The type first, as the intake does: a client that may not send it learns nothing.
        authorize_type(client, event_type)
        authorize_agency(client, agency, field="code")
        return client

    return check


def _verification_agency(client: ClientIdentity, event_type: str,
                         data: dict[str, Any]) -> ClientIdentity:
    """A verification for a dossier is authorized by the intake for the dossier's agency. One
    for no dossier (a check before submitting) is authorized here, for the agency of the
    client's own system id: a system asks for its own agency's citizens."""
    if data.get("dossier_code") is not None:
        return client
    authorize_type(client, event_type)
    own = codes.parse_agency(client.system_id.split(":")[2], "system_id").value
    if not client.may_act_for(own):
        raise AccessDenied(
            f"the request names no dossier, so it is for {client.system_id}'s own agency "
            f"{own}, which its access list does not allow; send the dossier_code of a dossier "
            "of an agency it may act for, or ask the hub's operator to extend its access list",
            field="dossier_code")
    # The canonical body carries no agency, and the intake refuses an event without one
    # unless the client may act for every agency: the agency was checked just above, so the
    # intake is handed the identity scoped to this request. (The envelope then has no agency;
    # its routing key reads citizen.verification-requested.none.none.)
    return replace(client, allowed_agencies=frozenset({"*"}))


def _with_path_code(data: dict[str, Any], code: str) -> dict[str, Any]:
    """The body of a route whose path names a dossier must name it too: the signature covers
    the body, never the path, and a body that named no dossier could be sent, signed as it
    is, to any dossier's path."""
    given = data.get("dossier_code")
    if given is None:
        raise ValidationError(f"is required: the signature covers the body, not the path, so "
                              f"the body names the path's dossier; add \"dossier_code\": "
                              f"\"{code}\" to the body and sign it", field="dossier_code")
    if given != code:
        raise ValidationError(f"is {given!r:.60} but the path names {code}; send the body to "
                              "its dossier's path, or repeat the path's code", field="dossier_code")
    return data


def _form(body: bytes) -> dict[str, str]:
    try:
        parsed = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise ValidationError("the body is not application/x-www-form-urlencoded ASCII",
                              field="body") from None
    return {k: v[0] for k, v in parsed.items()}


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    auth = request.headers.get("authorization")
    if auth and auth.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError("the Basic credentials are not base64 of 'id:secret'",
                             code="client.unauthenticated", oauth_error="invalid_client",
                             http_status=401, field="Authorization") from None
        basic_id, _, basic_secret = decoded.partition(":")
        return basic_id, basic_secret
    client_id, secret = form.get("client_id"), form.get("client_secret")
    if not client_id or secret is None:
        raise OAuthError("send client_id and client_secret (form fields or HTTP Basic)",
                         code="client.unauthenticated", oauth_error="invalid_client",
                         http_status=401, field="client_id")
    return client_id, secret


def _store_check(store: Store) -> str:
    # A read and the smallest write (hub.store.health): a store that answers reads but
    # refuses writes (read-only, disk full) cannot take a dossier in, so it is not ready.
    return store.probe()
