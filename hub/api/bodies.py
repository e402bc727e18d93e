"""Request and response bodies of the REST API, as pydantic models whose JSON Schemas appear in
the served OpenAPI document. The contracts are the files in ``schemas/api/``; a test checks that
these models and the files agree. Requests are validated by the canonical model
(``hub.model.parse_event_data``) after the signature over their raw bytes is verified, so these
models describe, they do not parse."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub.model import Status, VnDateTime


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StatusChangeReport(_Body):
    """Body of POST /v1/dossiers/{code}/status."""

    dossier_code: str | None = Field(default=None,
                                     description="optional; must equal the code in the path")
    status: Status
    previous_status: Status | None = None
    at: VnDateTime
    officer: str | None = None
    note: str | None = None


class ProgressStepReport(_Body):
    """Body of POST /v1/dossiers/{code}/progress."""

    dossier_code: str | None = Field(default=None,
                                     description="optional; must equal the code in the path")
    officer: str
    officer_title: str | None = None
    department: str | None = None
    content: str
    status: Status
    at: VnDateTime
    started_at: VnDateTime | None = None
    due_at: VnDateTime | None = None


class Accepted(_Body):
    message_id: str
    duplicate: bool


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    code: str
    message: str
    field: str | None = None
    origin: str


class TimelineItem(_Body):
    message_id: str
    event_type: str
    at: str
    source: str
    summary: dict[str, Any]


class Timeline(_Body):
    dossier_code: str
    entries: list[TimelineItem]


class TokenResponse(_Body):
    access_token: str
    token_type: str
    expires_in: int


class CallbackAccepted(_Body):
    message_ids: list[str]


# The refusals every authenticated route may answer with, for the OpenAPI document.
PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": text,
             "content": {"application/problem+json": {}}}
    for status, text in (
        (400, "malformed request"),
        (401, "no or unknown credentials (client.unauthenticated)"),
        (403, "not allowed by the client's access list (client.access_denied)"),
        (409, "Idempotency-Key reused for another body (client.idempotency_conflict)"),
        (413, "body too large (client.body_too_large)"),
        (422, "the body or a code does not match its contract; field names it"),
        (429, "too many requests from this client (client.rate_limited, Retry-After)"),
        (503, "the hub cannot keep the message now (server.timeout, server.store_unavailable)"),
    )
}
