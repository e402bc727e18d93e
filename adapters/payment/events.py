"""The events the payment adapter consumes and emits, and their ids.

Bodies are canonical models (hub.model: PaymentRequest, PaymentInitiated, PaymentCompleted).
Ids of emitted events are derived from what they describe (uuid5), so the same payment reported
twice (a duplicate callback, a callback after a reconciliation) is the same message and the
hub's idempotent receivers absorb it.
"""

from __future__ import annotations

import uuid

REQUESTED = "vn.gov.payment.requested"
INITIATED = "vn.gov.payment.initiated"
COMPLETED = "vn.gov.payment.completed"

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:lienthong:adapter:payment")


def initiated_id(partner: str, reference: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"initiated|{partner}|{reference}"))


def completed_id(partner: str, reference: str, transaction_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"completed|{partner}|{reference}|{transaction_id}"))
