"""The events the postal adapter consumes and emits, and their ids.

A tracking event's id is derived from what it reports (waybill, state, time), so the same
change seen twice (pushed by webhook and found by polling, or a webhook sent again) is the same
message and the hub's idempotent receivers absorb it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from hub.errors import InvalidMessage, ValidationError
from hub.privacy import scrub

PICKUP_REQUESTED = "vn.gov.postal.pickup-requested"
TRACKING_UPDATED = "vn.gov.postal.tracking-updated"

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:lienthong:adapter:postal")


def tracking_id(waybill: str, state: int, at: datetime) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"tracking|{waybill}|{state}|{at.isoformat()}"))


def as_invalid(exc: ValidationError) -> InvalidMessage:
    """Bad canonical data in a message is never worth retrying."""
    return InvalidMessage(scrub(exc.message), code=exc.code, field=exc.field, origin=exc.origin)
