"""The events the postal adapter consumes and emits, and their ids: a tracking event's is
derived from the change it reports (waybill, state, time)."""

from __future__ import annotations

from datetime import datetime

from hub.envelope import derived_id

PICKUP_REQUESTED = "vn.gov.postal.pickup-requested"
TRACKING_UPDATED = "vn.gov.postal.tracking-updated"


def tracking_id(waybill: str, state: int, at: datetime) -> str:
    return derived_id("postal", "tracking", waybill, state, at.isoformat())
