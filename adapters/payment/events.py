"""The events the payment adapter consumes and emits (bodies: hub.model's PaymentRequest,
PaymentInitiated, PaymentCompleted), and their ids, derived from what they describe."""

from __future__ import annotations

from hub.envelope import derived_id

REQUESTED = "vn.gov.payment.requested"
INITIATED = "vn.gov.payment.initiated"
COMPLETED = "vn.gov.payment.completed"


def initiated_id(partner: str, reference: str) -> str:
    return derived_id("payment", "initiated", partner, reference)


def completed_id(partner: str, reference: str, transaction_id: str) -> str:
    return derived_id("payment", "completed", partner, reference, transaction_id)
