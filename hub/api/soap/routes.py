"""The SOAP service over HTTP (FastAPI): ``POST`` requests, ``GET ?wsdl`` and ``GET ?xsd=``.

The body is read here with the size limit (refused as soon as it passes it, never read whole
into memory), then the pipeline (``service``) runs: checks (``prepare``), the intake, the
signed answer (``finish``).

Where the checks run is a measured choice. A typical request (a few KB) costs about a
millisecond of CPU to parse, validate and verify, and about as much again is lost handing it to
a worker thread and back (queue, wake-up, GIL hand-over): such requests are checked on the event
loop itself. A large one (up to ``max_body_bytes``) would hold the loop for longer, so it goes
to a worker thread. The answer's RSA signature releases the GIL, so signing on the loop still
lets worker threads run. The intake's commit is awaited (``accept_async``) without holding a
thread when the intake offers it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from hub.api.errors import BodyTooLarge, RequestTimeout
from hub.api.soap.contract import XSD_NAME
from hub.api.soap.service import Accepted, SoapReply, SoapService
from hub.errors import HubError

_XML = "text/xml; charset=utf-8"
# Requests up to this size are checked on the event loop (see above).
INLINE_MAX_BYTES = 32 * 1024


def build_router(service: SoapService, *, path: str, timeout: float,
                 inline_max_bytes: int = INLINE_MAX_BYTES) -> APIRouter:
    router = APIRouter()

    @router.get(path, include_in_schema=False)
    async def describe(request: Request) -> Response:
        query = {k.lower(): v for k, v in request.query_params.multi_items()}
        if "wsdl" in query:
            address = str(request.url.replace(query="", fragment=""))
            return Response(service.contract.wsdl(address), media_type=_XML)
        if "xsd" in query:
            if query["xsd"] == XSD_NAME:
                return Response(service.contract.xsd_bytes, media_type=_XML)
            return Response(f"no schema {query['xsd']!r:.60}; the service's schema is "
                            f"?xsd={XSD_NAME}\n", status_code=404, media_type="text/plain")
        return Response(
            "This is a SOAP 1.1 and 1.2 endpoint: POST requests to it. Its WSDL is at ?wsdl.\n",
            status_code=405, headers={"Allow": "GET, POST"}, media_type="text/plain")

    @router.post(path, include_in_schema=False)
    async def call(request: Request) -> Response:
        headers: Mapping[str, str] = request.headers
        try:
            body = await _read_limited(request, service.max_body_bytes)
        except HubError as exc:
            reply = service.refuse(headers, exc)
        else:
            try:
                async with asyncio.timeout(timeout):
                    reply = await _handle(service, headers, body, inline_max_bytes)
            except TimeoutError:
                # The intake's job is not cancelled and may still keep the request: the
                # client sends the same request again and learns its message id.
                reply = service.refuse(headers, RequestTimeout(
                    f"the hub did not answer within {timeout:g} s; send the same request "
                    "again (a request that was kept is answered with its message id)"))
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type)

    return router


async def _handle(service: SoapService, headers: Mapping[str, str], body: bytes,
                  inline_max_bytes: int) -> SoapReply:
    inline = len(body) <= inline_max_bytes
    if inline:
        prepared = service.prepare(headers, body)
    else:
        prepared = await run_in_threadpool(service.prepare, headers, body)
    if isinstance(prepared, SoapReply):
        return prepared
    accept_async = getattr(service.intake, "accept_async", None)

    def accept() -> Accepted:
        return service.intake.accept(
            prepared.client, prepared.op.event_type, prepared.data,
            idempotency_key=prepared.idempotency_key, upstream_proof=prepared.upstream_proof)

    outcome: Accepted | Exception
    try:
        if accept_async is not None:
            outcome = await accept_async(
                prepared.client, prepared.op.event_type, prepared.data,
                idempotency_key=prepared.idempotency_key,
                upstream_proof=prepared.upstream_proof)
        else:
            outcome = await run_in_threadpool(accept)
    except Exception as exc:
        outcome = exc
    if inline:
        return service.finish(prepared, outcome)
    return await run_in_threadpool(service.finish, prepared, outcome)


async def _read_limited(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(declared, max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(f"more than {max_bytes}", max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: str, max_bytes: int) -> BodyTooLarge:
    return BodyTooLarge(
        f"the request is {size} bytes; the hub accepts at most {max_bytes}. Send attachments "
        "by reference (url, size, sha256), never inline",
        field="body",
    )
