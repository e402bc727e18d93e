"""Request and response bodies of the REST API, as pydantic models whose JSON Schemas appear in
the served OpenAPI document. The contracts are the files in ``schemas/api/``; a test checks that
these models and the files agree. Requests are validated by the canonical model
(``hub.model.parse_event_data``) after the signature over their raw bytes is verified, so these
models describe, they do not parse."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.model import Applicant, Fee, Party, Status, VnDateTime


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


class FeePaymentRequest(_Body):
    """Body of POST /v1/dossiers/{code}/payments (event ``vn.gov.payment.requested``)."""

    dossier_code: str | None = Field(default=None,
                                     description="optional; must equal the code in the path")
    procedure_code: str
    agency_code: str = Field(description="the agency that collects the payment; the client "
                                         "must be allowed to act for it and for the dossier's")
    reference: str = Field(min_length=1, max_length=50,
                           description="the client's payment reference, unique per payment")
    amount: Decimal = Field(gt=0, description="VND, more than 0")
    fees: tuple[Fee, ...] = Field(default=(), description="the fees the amount is made of")
    payer: Applicant
    description: str = ""


class PostalOrderRequest(_Body):
    """Body of POST /v1/dossiers/{code}/postal-orders (event
    ``vn.gov.postal.pickup-requested``)."""

    dossier_code: str | None = Field(default=None,
                                     description="optional; must equal the code in the path")
    sender: Party
    receiver: Party
    cod_amount: Decimal = Field(default=Decimal(0),
                                description="VND to collect on delivery; 0 for none")
    description: str = ""
    direction: Literal["pickup", "return"] = Field(
        default="return", description="pickup: documents from the citizen to the agency; "
                                      "return: the result from the agency to the citizen")


class CitizenVerificationRequest(_Body):
    """Body of POST /v1/citizens/verifications (event
    ``vn.gov.citizen.verification-requested``)."""

    dossier_code: str | None = Field(
        default=None, description="optional: the dossier the check is for. The client must be "
                                  "allowed to act for its agency; without a dossier, for the "
                                  "agency of its own system id (VN:GOV:<agency>:<system>)")
    identity_number: str = Field(pattern=r"^(?:\d{12}|\d{9})$",
                                 description="12 digits (9 for an old ID card)")
    name: str
    birth_date: date | None = None
    birth_year: int | None = Field(default=None,
                                   description="when only the year of birth is known")


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
