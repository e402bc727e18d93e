from datetime import datetime
from typing import Any

import pytest

from hub.errors import ValidationError
from hub.model import (
    EVENT_MODELS,
    TRANSITIONS,
    VN_TZ,
    Dossier,
    Status,
    can_transition,
    check_transition,
    parse_event_data,
    validate_model,
)


def dossier(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "code": "000.00.00.H56-250101-0001",
        "procedure_code": "2.002492",
        "agency_code": "000.00.00.H56",
        "applicant": {"identity_number": "001203004567", "name": "Nguyễn Văn A"},
        "channel": 2,
        "attachments": [
            {
                "id": "f1",
                "name": "don.pdf",
                "url": "https://files.example/don.pdf",
                "size": 1024,
                "sha256": "a" * 64,
            }
        ],
        "fees": [{"code": "LP1", "name": "Lệ phí", "amount": "50000"}],
    }
    base.update(over)
    return base


def test_valid_dossier_parses() -> None:
    d = validate_model(Dossier, dossier(submitted_at="2025-01-01T08:00:00"))
    assert d.status is Status.NEW
    assert d.submitted_at.tzinfo == VN_TZ  # naive wire times are Vietnam time
    assert d.attachments[0].size == 1024


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"code": "bad"}, "code"),
        ({"agency_code": "H5"}, "agency_code"),
        ({"procedure_code": "2.1"}, "procedure_code"),
        ({"applicant": {"identity_number": "12", "name": "A"}}, "applicant.identity_number"),
        ({"channel": 9}, "channel"),
        ({"channel": "online"}, "channel"),
    ],
)
def test_bad_dossier_names_field(over: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        validate_model(Dossier, dossier(**over))
    assert err.value.field == field


def test_missing_field_named() -> None:
    data = dossier()
    del data["procedure_code"]
    with pytest.raises(ValidationError) as err:
        validate_model(Dossier, data)
    assert err.value.field == "procedure_code"


def test_attachment_digest_must_be_sha256() -> None:
    data = dossier()
    data["attachments"][0]["sha256"] = "xyz"
    with pytest.raises(ValidationError) as err:
        validate_model(Dossier, data)
    assert err.value.field == "attachments.0.sha256"


def test_every_status_has_transitions_entry() -> None:
    assert set(TRANSITIONS) == set(Status)
    assert [int(s) for s in Status] == list(range(1, 11))


@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [
        (None, Status.NEW, True),
        (None, Status.RESOLVED, False),
        (Status.NEW, Status.RECEIVED, True),
        (Status.RECEIVED, Status.PROCESSING, True),
        (Status.PROCESSING, Status.RESOLVED, True),
        (Status.RESOLVED, Status.RESULT_RETURNED, True),
        (Status.RESULT_RETURNED, Status.PROCESSING, False),
        (Status.WITHDRAWN, Status.PROCESSING, False),
        (Status.SUPPLEMENT_REQUESTED, Status.PROCESSING, True),
        (Status.PROCESSING, Status.PROCESSING, True),
        (Status.NEW, Status.RESOLVED, False),
    ],
)
def test_transitions(old: Status | None, new: Status, ok: bool) -> None:
    assert can_transition(old, new) is ok


def test_bad_transition_error_lists_allowed() -> None:
    with pytest.raises(ValidationError, match="allowed next statuses") as err:
        check_transition(Status.RESULT_RETURNED, Status.PROCESSING)
    assert err.value.code == "client.bad_transition"


def test_event_data_by_type() -> None:
    model = parse_event_data(
        "vn.gov.dossier.status-changed",
        {"dossier_code": "000.00.00.H56-250101-0001", "status": 4, "at": datetime.now(VN_TZ)},
    )
    assert model.status is Status.PROCESSING  # type: ignore[attr-defined]
    with pytest.raises(ValidationError) as err:
        parse_event_data("vn.gov.nothing.happened", {})
    assert err.value.field == "type"
    assert "vn.gov.dossier.submitted" in EVENT_MODELS
