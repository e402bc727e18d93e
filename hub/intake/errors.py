"""Refusals of the intake service, whatever door the request came through; each carries the
HTTP status the REST door answers with (SOAP turns it into a fault)."""

from __future__ import annotations

from hub.errors import Conflict, RetryableError


class IdempotencyConflict(Conflict):
    """The same Idempotency-Key was used before for a different body."""

    code = "client.idempotency_conflict"


class StoreUnavailable(RetryableError):
    """The store did not answer; nothing was kept, the same request can be sent again."""

    code = "server.store_unavailable"
    http_status = 503
