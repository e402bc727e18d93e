"""The events the payment adapter consumes and emits, and their ids.

``vn.gov.payment.initiated`` is not (yet) in hub.model.EVENT_MODELS: its model lives here until
the core adopts it. Ids of emitted events are derived from what they describe (uuid5), so the
same payment reported twice (a duplicate callback, a callback after a reconciliation) is the
same message and the hub's idempotent receivers absorb it.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub.errors import InvalidMessage, ValidationError
from hub.model import DossierStr, VnDateTime, parse_event_data, validate_model
from hub.privacy import scrub

REQUESTED = "vn.gov.payment.requested"
INITIATED = "vn.gov.payment.initiated"
COMPLETED = "vn.gov.payment.completed"

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:lienthong:adapter:payment")


class PaymentInitiated(BaseModel):
    """The gateway accepted a payment request: where the citizen pays."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dossier_code: DossierStr
    reference: str = Field(min_length=1, max_length=50)
    amount: Decimal = Field(gt=0)
    payment_url: str = Field(pattern=r"^https?://")
    at: VnDateTime


def initiated_id(partner: str, reference: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"initiated|{partner}|{reference}"))


def completed_id(partner: str, reference: str, transaction_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"completed|{partner}|{reference}|{transaction_id}"))


def validate(event_type: str, data: Any) -> BaseModel:
    """Validate an event body: the core's models, plus the ones this adapter defines."""
    if event_type == INITIATED:
        model: BaseModel = validate_model(PaymentInitiated, data)
        return model
    return parse_event_data(event_type, data)


def as_invalid(exc: ValidationError) -> InvalidMessage:
    """Bad canonical data in a message is never worth retrying."""
    return InvalidMessage(scrub(exc.message), code=exc.code, field=exc.field, origin=exc.origin)
