"""The events the postal adapter consumes and emits, and their ids.

A tracking event's id is derived from what it reports (waybill, state, time), so the same
change seen twice (pushed by webhook and found by polling, or a webhook sent again) is the same
message and the hub's idempotent receivers absorb it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

PICKUP_REQUESTED = "vn.gov.postal.pickup-requested"
TRACKING_UPDATED = "vn.gov.postal.tracking-updated"

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:lienthong:adapter:postal")


def tracking_id(waybill: str, state: int, at: datetime) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"tracking|{waybill}|{state}|{at.isoformat()}"))
