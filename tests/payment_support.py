"""Building blocks for tests of the payment adapter: a sample payment request, its
envelope, and an AdapterContext pointed at a simulator with a quick call policy."""

from __future__ import annotations

import uuid
from typing import Any

from adapters.payment import events
from hub.adapters import AdapterContext
from hub.envelope import Envelope
from hub.testing.adapters import quick_context

UPSTREAM = "VN:GOV:000.00.00.H56:igate"



def sample_request(**changes: Any) -> dict[str, Any]:
    """A canonical ``vn.gov.payment.requested`` body with a unique reference."""
    data: dict[str, Any] = {
        "dossier_code": "000.00.00.H56-250101-0001",
        "procedure_code": "2.002492",
        "agency_code": "000.00.00.H56",
        "reference": f"LT{uuid.uuid4().hex[:16].upper()}",
        "amount": "150000",
        "fees": [
            {"code": "LP01", "name": "Lệ phí cấp giấy", "amount": "100000", "kind": 2},
            {"code": "P01", "name": "Phí thẩm định", "amount": "50000", "kind": 1},
        ],
        "payer": {
            "identity_number": "001234567867",
            "name": "Nguyễn Văn A",
            "address": "1 Lê Lợi, Thanh Hóa",
        },
        "description": "",
    }
    data.update(changes)
    return data


def request_envelope(data: dict[str, Any] | None = None, **changes: Any) -> Envelope:
    body = data or sample_request(**changes)
    return Envelope.new(
        source=UPSTREAM,
        type=events.REQUESTED,
        subject=body["dossier_code"],
        data=body,
        agency=body["agency_code"],
        procedure=body["procedure_code"],
    )


def context(settings: Any, base_url: str, **kwargs: Any) -> AdapterContext:
    return quick_context(settings, "payment", base_url, **kwargs)
