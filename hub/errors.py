"""The hub's error vocabulary.

Every error carries a stable dotted code (``client.bad_signature``, ``server.broker_unavailable``)
that callers and operators can match on, the field it concerns when there is one, and its
origin: ``hub`` for errors the hub raises itself, ``system:<name>`` for errors reported by a
system behind the hub, so a reader never mistakes a portal outage for a hub defect.

How a consumer treats an error is decided by its class, not by parsing the code:
- ``InvalidMessage``: the message itself is bad (signature, parse, schema, mapping); never
  retried, parked in the invalid-message queue.
- ``RetryableError``: the world is temporarily wrong (a system down, a timeout); walk the
  retry tiers.
- ``PermanentError``: retrying cannot help (a system refused the content); dead letters.
"""

from __future__ import annotations

from typing import Any

HUB = "hub"


class HubError(Exception):
    """Base of every error the hub names. ``code`` is stable; ``message`` is for humans."""

    code: str = "server.internal"
    http_status: int = 500

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        origin: str = HUB,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field
        self.origin = origin

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message, "origin": self.origin}
        if self.field is not None:
            body["field"] = self.field
        return body

    def __str__(self) -> str:
        where = f" [{self.field}]" if self.field else ""
        return f"{self.code}{where}: {self.message}"


class ClientError(HubError):
    """The caller sent something wrong; repeating the same request will fail the same way."""

    code = "client.bad_request"
    http_status = 400


class CodeError(ClientError, ValueError):
    """A code (agency, dossier, procedure, identity number) does not parse. Also a ValueError so
    that pydantic validators wrap it with the full location of the field."""

    code = "client.bad_code"
    http_status = 422


class ValidationError(ClientError):
    """A body does not match its contract."""

    code = "client.schema_invalid"
    http_status = 422


class AccessDenied(ClientError):
    code = "client.access_denied"
    http_status = 403


class NotFound(ClientError):
    """What the request names (a path, a dossier, a dead letter) does not exist at this hub."""

    code = "client.not_found"
    http_status = 404


class Conflict(ClientError):
    """The request contradicts what the hub already holds (a record resolved meanwhile, a key
    used before for something else); it fails the same way until that changes."""

    code = "client.conflict"
    http_status = 409


class InvalidMessage(HubError):
    """A message that can never be processed: bad signature, unparseable, schema or mapping
    failure. Parked in the invalid-message queue at once, never retried."""

    code = "client.invalid_message"
    http_status = 400


class RetryableError(HubError):
    """A temporary failure: the message is worth trying again later. ``retry_after``: the
    seconds the failing system asked the hub to wait (its ``Retry-After``), when it said."""

    code = "server.temporarily_unavailable"
    http_status = 503

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        origin: str = HUB,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, field=field, origin=origin)
        self.retry_after = retry_after


class PermanentError(HubError):
    """Retrying cannot help; the message goes to the dead letters with this reason."""

    code = "server.permanent_failure"
    http_status = 502


class BrokerUnavailable(RetryableError):
    code = "server.broker_unavailable"


class ConfigError(HubError):
    """The hub's own configuration is wrong; the operator must fix a file or variable."""

    code = "server.config_invalid"


class SecretMissing(HubError):
    """A door whose secret is not configured stays shut, and says which setting opens it: an
    adapter's callback (checksum secret, webhook token) before its environment variable is set.
    503: the call is refused as unavailable, not as the caller's fault."""

    code = "server.secret_missing"
    http_status = 503
