"""The SOAP service over HTTP: ``POST`` requests, ``GET ?wsdl`` and ``GET ?xsd=``.

The endpoint is a plain ASGI app in a Starlette route (``build_router``): a SOAP request needs
none of FastAPI's per-request machinery (dependencies, body parsing, response models), which
costs the event loop (see docs/performance.md#plain-asgi-routes). The app's middleware
(metrics, limits) still runs.

The body is read here with the size limit (refused as soon as it passes it, never read whole
into memory), then the pipeline (``service``) runs: checks (``prepare``), the intake, the
signed answer (``finish``). One deadline (``Settings.request_timeout``) covers both: a body
that has not all arrived by then is a ``client.request_timeout`` fault and the connection is
closed; a pipeline that has not finished is ``server.timeout``.

The WSDL names the service at ``Settings.public_url`` (the hub's address as its clients reach
it), else at the address the connection arrived on: never at the request's Host header, which
any client writes, so a forged one cannot send the next client's requests elsewhere.

Where the checks run is a measured choice (docs/performance.md#soap-checks-on-the-event-loop):
a typical request (a few KB) costs about as much CPU to parse, validate and verify as is lost
handing it to a worker thread and back (queue, wake-up, GIL hand-over), so such requests are
checked on the event loop itself. A large one (up to ``max_body_bytes``) would hold the loop
for longer, so it goes to a worker thread. The answer's RSA signature releases the GIL, so
signing on the loop still lets worker threads run. The intake's commit is awaited
(``accept_async``) without holding a thread when the intake offers it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from hub.api.errors import BodyTooLarge, RequestTimeout, SlowRequest
from hub.api.soap.contract import XSD_NAME
from hub.api.soap.service import Accepted, SoapReply, SoapService
from hub.errors import HubError

_XML = b"text/xml; charset=utf-8"
_TEXT = b"text/plain; charset=utf-8"
# Requests up to this size are checked on the event loop (see above).
INLINE_MAX_BYTES = 32 * 1024


def build_router(service: SoapService, *, path: str, timeout: float,
                 inline_max_bytes: int = INLINE_MAX_BYTES, public_url: str = "") -> APIRouter:
    """A router holding the SOAP endpoint at ``path`` (include it in the app); its WSDL names
    it at ``public_url + path`` (see the module's docstring when ``public_url`` is empty)."""
    router = APIRouter()
    router.routes.append(Route(path, SoapEndpoint(service, timeout=timeout,
                                                  inline_max_bytes=inline_max_bytes,
                                                  public_url=public_url, path=path),
                               include_in_schema=False))
    return router


class SoapEndpoint:
    """The ASGI app of the SOAP endpoint."""

    def __init__(self, service: SoapService, *, timeout: float,
                 inline_max_bytes: int = INLINE_MAX_BYTES, public_url: str = "",
                 path: str = "/soap/v1") -> None:
        self.service = service
        self.timeout = timeout
        self.inline_max_bytes = inline_max_bytes
        self.public_url = public_url.rstrip("/")
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "POST":
            reply = await self.call(Headers(scope=scope), receive)
            await _send(send, reply.status, reply.content_type.encode(), reply.body,
                        extra=reply.headers)
        elif method in ("GET", "HEAD"):
            status, content_type, body = self.describe(Request(scope), self.address(scope))
            await _send(send, status, content_type, b"" if method == "HEAD" else body)
        else:
            await _send(send, 405, _TEXT, b"POST SOAP requests; GET ?wsdl for the WSDL\n",
                        allow=b"GET, HEAD, POST")

    def address(self, scope: Scope) -> str:
        """The service's address in the WSDL: the configured public URL, else the socket's
        local address (where this connection arrived) and scheme."""
        if self.public_url:
            return self.public_url + self.path
        server = scope.get("server")
        if not server:
            raise RuntimeError("no public_url and no server address to name in the WSDL")
        host, port = server[0], server[1]
        scheme = "https" if scope.get("scheme") == "https" else "http"
        if ":" in host:
            host = f"[{host}]"
        default = {"http": 80, "https": 443}[scheme]
        netloc = host if port in (None, default) else f"{host}:{port}"
        return f"{scheme}://{netloc}{scope.get('root_path', '')}{self.path}"

    def describe(self, request: Request, address: str) -> tuple[int, bytes, bytes]:
        query = {k.lower(): v for k, v in request.query_params.multi_items()}
        if "wsdl" in query:
            return 200, _XML, self.service.contract.wsdl(address)
        if "xsd" in query:
            if query["xsd"] == XSD_NAME:
                return 200, _XML, self.service.contract.xsd_bytes
            return 404, _TEXT, (f"no schema {query['xsd']!r:.60}; the service's schema is "
                                f"?xsd={XSD_NAME}\n").encode()
        return 405, _TEXT, (b"This is a SOAP 1.1 and 1.2 endpoint: POST requests to it. "
                            b"Its WSDL is at ?wsdl.\n")

    async def call(self, headers: Mapping[str, str], receive: Receive) -> SoapReply:
        service = self.service
        body: bytes | None = None
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    body = await _read_limited(headers, receive, service.max_body_bytes)
                except HubError as exc:
                    return service.refuse(headers, exc)
                return await _handle(service, headers, body, self.inline_max_bytes)
        except TimeoutError:
            if body is None:
                announced = headers.get("content-length")
                reply = service.refuse(headers, SlowRequest(
                    f"the request's body did not arrive within {self.timeout:g} s"
                    + (f" (Content-Length announced {announced[:20]} bytes)" if announced
                       else "") + "; send the whole request at once", field="body"))
                # The rest of the body may still come: it must not be read as a next request.
                return replace(reply, headers=(*reply.headers, (b"connection", b"close")))
            # The intake's job is not cancelled and may still keep the request: the
            # client sends the same request again and learns its message id.
            return service.refuse(headers, RequestTimeout(
                f"the hub did not answer within {self.timeout:g} s; send the same request "
                "again (a request that was kept is answered with its message id)"))


async def _send(send: Send, status: int, content_type: bytes, body: bytes,
                allow: bytes | None = None, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
               *extra]
    if allow is not None:
        headers.append((b"allow", allow))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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


async def _read_limited(headers: Mapping[str, str], receive: Receive, max_bytes: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(declared, max_bytes)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HubError("the client went away before sending the whole request; send it "
                           "again", field="body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(f"more than {max_bytes}", max_bytes)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(size: str, max_bytes: int) -> BodyTooLarge:
    return BodyTooLarge(
        f"the request is {size} bytes; the hub accepts at most {max_bytes}. Send attachments "
        "by reference (url, size, sha256), never inline",
        field="body",
    )
