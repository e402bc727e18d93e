"""Refusals specific to the entry points. Each carries the HTTP status it is answered with and
a stable dotted code; anything else an entry point refuses with comes from ``hub.errors`` or,
for the rules of accepting a submission, ``hub.intake.errors``."""

from __future__ import annotations

from hub.errors import ClientError, HubError


class Unauthenticated(ClientError):
    """No credentials, or credentials the hub does not know (HTTP 401)."""

    code = "client.unauthenticated"
    http_status = 401


class MethodNotAllowed(ClientError):
    """The path does not take the method; ``allow`` lists those it takes (the ``Allow``
    header RFC 9110 requires on a 405)."""

    code = "client.method_not_allowed"
    http_status = 405

    def __init__(self, message: str, *, allow: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.allow = allow


class UnsupportedMediaType(ClientError):
    code = "client.unsupported_media_type"
    http_status = 415


class BodyTooLarge(ClientError):
    code = "client.body_too_large"
    http_status = 413


class RateLimited(ClientError):
    code = "client.rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after: float, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class RequestTimeout(HubError):
    """The hub did not finish the request in time. The request may still have been kept: a
    client retries with the same Idempotency-Key to learn its message id."""

    code = "server.timeout"
    http_status = 503


class Busy(HubError):
    """The process already has ``Settings.max_in_flight`` requests in hand (HTTP 503, with
    Retry-After): nothing of the request was read or kept, and the same request may be sent
    again after the wait, to this or another process."""

    code = "server.busy"
    http_status = 503

    def __init__(self, message: str, *, retry_after: float, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class SlowRequest(ClientError):
    """The client did not send its whole request in time: its headers within
    ``Settings.header_timeout``, or its body within ``Settings.request_timeout``. Answered 408
    and the connection is closed (what is left of the request can no longer be told apart from
    a next one)."""

    code = "client.request_timeout"
    http_status = 408


class MalformedRequest(ClientError):
    """Bytes that are not an HTTP/1.1 request (a bad request line, header or chunk): answered
    400 and the connection is closed (where the next request would start is unknown)."""

    code = "client.malformed_request"
    http_status = 400


class HeadersTooLarge(ClientError):
    """The request's headers pass ``Settings.max_header_bytes`` or ``Settings.max_headers``
    (HTTP 431); the connection is closed."""

    code = "client.headers_too_large"
    http_status = 431
