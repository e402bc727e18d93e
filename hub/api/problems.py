"""Every refusal as a JSON body: RFC 9457 problem details (``type``, ``title``, ``status``,
``detail``, ``instance``) plus the hub's own ``code``, ``message``, ``field`` and ``origin``
(``HubError.to_dict()``), so a client can match on the stable code and a human reads the
message. Framework errors (unknown route, bad path parameter, unexpected exception) are
turned into the same shape here, at the edge."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.api.errors import Busy, MethodNotAllowed, RateLimited, Unauthenticated
from hub.api.metrics import note_refusal
from hub.errors import ClientError, HubError, NotFound, ValidationError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


def problem_body(error: HubError, instance: str | None = None) -> dict[str, Any]:
    try:
        title = HTTPStatus(error.http_status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {
        "type": f"urn:lienthong:error:{error.code}",
        "title": title,
        "status": error.http_status,
        "detail": error.message if error.field is None else f"{error.field}: {error.message}",
    }
    if instance is not None:
        body["instance"] = instance
    body.update(error.to_dict())
    oauth_error = getattr(error, "oauth_error", None)
    if oauth_error is not None:  # RFC 6749 section 5.2, for stock OAuth2 clients
        body["error"] = oauth_error
    return body


def problem_headers(error: HubError) -> dict[str, str]:
    headers: dict[str, str] = {}
    if isinstance(error, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="lienthong", ApiKey realm="lienthong"'
    if isinstance(error, MethodNotAllowed):
        headers["Allow"] = error.allow
    if isinstance(error, RateLimited | Busy):
        # Retry-After is whole seconds (RFC 9110); round up so a client never comes back early.
        headers["Retry-After"] = str(max(1, int(-(-error.retry_after // 1))))
    return headers


class ProblemResponse(JSONResponse):
    """A problem body as UTF-8 JSON, whatever its strings hold."""

    media_type = PROBLEM_JSON

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            # A lone surrogate (in a message quoting a value, or a field named after one) is no
            # character, and UTF-8 cannot carry it: the refusal must not become a 500 for it.
            return super().render(_printable(content))


def _printable(value: Any) -> Any:
    """``value`` with each lone surrogate written as the text of its escape (``\\udfff``):
    valid Unicode, and a reader still sees what was there."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


def problem_response(error: HubError, instance: str | None = None) -> JSONResponse:
    note_refusal(error)  # counted and logged with the caller's address (hub.api.metrics)
    return ProblemResponse(
        problem_body(error, instance),
        status_code=error.http_status,
        headers=problem_headers(error),
    )


def from_request_validation(exc: RequestValidationError) -> HubError:
    """FastAPI's own parameter validation (path, query, header) as a hub error naming the
    parameter."""
    errors = exc.errors()
    if not errors:
        return ValidationError("the request does not match its contract")
    err = errors[0]
    loc = [str(p) for p in err.get("loc", ()) if p not in ("path", "query", "header", "body")]
    field = ".".join(loc) or None
    return ValidationError(f"{err.get('msg', 'invalid')} (got {err.get('input')!r:.80})",
                           field=field)


def from_http_exception(exc: StarletteHTTPException) -> HubError:
    if exc.status_code == 404:
        return NotFound("no such path; the hub's paths are listed at /openapi.json")
    if exc.status_code == 405:
        # Starlette's router names the methods of the path it matched in Allow.
        allow = (exc.headers or {}).get("Allow", "")
        return MethodNotAllowed(f"this path takes only {allow or 'other methods'}; the paths "
                                "and their methods are listed at /openapi.json", allow=allow)
    error = ClientError(str(exc.detail)) if exc.status_code < 500 else HubError(str(exc.detail))
    error.http_status = exc.status_code
    return error


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into a problem body."""

    async def on_hub_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HubError)
        return problem_response(exc, request.url.path)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(from_request_validation(exc), request.url.path)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(from_http_exception(exc), request.url.path)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        error = HubError(
            "the hub failed on this request; it has been logged. Retry later with the same "
            "Idempotency-Key",
        )
        return problem_response(error, request.url.path)

    app.add_exception_handler(HubError, on_hub_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
