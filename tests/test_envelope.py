import json
import uuid
from datetime import UTC, datetime

import pytest

from hub.contracts import load_contract
from hub.envelope import SEQUENCE_DIGITS, Envelope, routing_key
from hub.errors import InvalidMessage
from hub.settings import PROJECT_ROOT

SOURCE = "VN:GOV:000.00.00.H56:igate"


def make(**over: object) -> Envelope:
    kw: dict[str, object] = {
        "source": SOURCE,
        "type": "vn.gov.dossier.submitted",
        "subject": "000.00.00.H56-250101-0001",
        "data": {"x": "Hồ sơ"},
        "agency": "000.00.00.H56",
        "procedure": "2.002492",
    }
    kw.update(over)
    return Envelope.new(**kw)  # type: ignore[arg-type]


def test_round_trip_and_cloudevents_names() -> None:
    env = make(sequence=3, correlationid="c1")
    body = env.to_bytes()
    doc = json.loads(body)
    assert doc["specversion"] == "1.0"
    assert {"id", "source", "type", "subject", "time", "datacontenttype", "data"} <= set(doc)
    assert Envelope.from_bytes(body) == env
    assert "Hồ sơ" in body.decode()  # UTF-8, not \u escapes: smaller and readable


def test_derive_keeps_correlation() -> None:
    first = make(sequence=4)
    second = first.derive(source="VN:GOV:000.00.00.G22:lienthong", type="vn.gov.payment.requested",
                          data={})
    assert second.causationid == first.id
    assert second.correlationid == first.id
    assert second.subject == first.subject
    assert second.id != first.id
    # A new event of the dossier takes its own number when the hub keeps it, not its cause's.
    assert second.sequence is None


def test_sequence_is_a_zero_padded_string_on_the_wire() -> None:
    """CloudEvents' sequence is a String that must order lexicographically: the hub writes its
    int zero-padded, so string order is number order, and keeps an int in Python."""
    bodies = [make(sequence=n).to_bytes() for n in (9, 10, 123_456_789_012)]
    wire = [json.loads(b)["sequence"] for b in bodies]
    assert wire == ["0000000000000000009", "0000000000000000010", "0000000123456789012"]
    assert all(len(w) == SEQUENCE_DIGITS for w in wire)
    assert sorted(wire) == wire
    assert [Envelope.from_bytes(b).sequence for b in bodies] == [9, 10, 123_456_789_012]
    assert "sequence" not in json.loads(make().to_bytes())  # none: absent, never null
    # The largest value the store's BIGINT holds has a spelling; beyond the width, none.
    big = 2**63 - 1
    assert Envelope.from_bytes(make(sequence=big).to_bytes()).sequence == big
    with pytest.raises(ValueError, match="sequence"):
        make(sequence=10**SEQUENCE_DIGITS).to_bytes()


@pytest.mark.parametrize(
    "value",
    [
        3,  # a JSON number: the extension's type is String
        "3",  # unpadded: "10" would sort before "9"
        "00000000000000000003",  # too wide
        "-000000000000000003",
        "+000000000000000003",
        " 000000000000000003",
        "000000000000000_003",
        "000000000000000003\n",
        "٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٣",  # Arabic-Indic digits: int() would take them
        True,
        "",
    ],
)
def test_sequence_is_read_strictly(value: object) -> None:
    with pytest.raises(InvalidMessage) as err:
        Envelope.from_dict(_doc(sequence=value))
    assert (err.value.field, err.value.code) == ("sequence", "client.envelope_invalid")
    assert "19 ASCII digits" in err.value.message
    # The published contract (schemas/broker) refuses it too: the hub is never laxer.
    assert CONTRACT.problem("envelope", _doc(sequence=value)) is not None


CONTRACT = load_contract(PROJECT_ROOT / "schemas" / "broker")


def test_what_the_hub_writes_meets_its_published_contract() -> None:
    relayed = make(sequence=12, correlationid="c", causationid="d",
                   extensions={"upstream": SOURCE, "systemsequence": "5001"})
    for env in (make(), relayed):
        assert CONTRACT.problem("envelope", json.loads(env.to_bytes())) is None


def test_system_sequence_travels_as_its_own_string_extension() -> None:
    env = make(sequence=7, extensions={"systemsequence": "42"})
    doc = json.loads(env.to_bytes())
    assert (doc["sequence"], doc["systemsequence"]) == ("0000000000000000007", "42")
    back = Envelope.from_bytes(env.to_bytes())
    assert back.sequence == 7 and back.extensions == {"systemsequence": "42"}


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (b'{"id": "x"', "client.unparseable", None),
        (b"\xff\xfe", "client.unparseable", None),
        (b"[]", "client.unparseable", None),
        (b'{"id": "1"}', "client.envelope_invalid", "source"),
        # Nested beyond the parser's recursion: invalid, not an unexpected RecursionError.
        (b"[" * 100_000 + b"]" * 100_000, "client.unparseable", None),
        (b'{"data": ' * 100_000, "client.unparseable", None),
    ],
)
def test_bad_bodies(body: bytes, code: str, field: str | None) -> None:
    with pytest.raises(InvalidMessage) as err:
        Envelope.from_bytes(body)
    assert err.value.code == code
    assert err.value.field == field


def _doc(**over: object) -> dict[str, object]:
    doc = make().to_dict()
    doc.update(over)
    return doc


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"id": "not-a-uuid"}, "id"),
        ({"source": "igate"}, "source"),
        ({"type": "dossier"}, "type"),
        ({"time": "yesterday"}, "time"),
        ({"time": "2025-01-01T00:00:00"}, "time"),
        ({"sequence": -1}, "sequence"),
        ({"specversion": "0.3"}, "specversion"),
    ],
)
def test_bad_attributes_named(over: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidMessage) as err:
        Envelope.from_dict(_doc(**over))
    assert err.value.field == field


def test_unknown_extensions_kept() -> None:
    env = Envelope.from_dict(_doc(traceparent="00-abc"))
    assert env.extensions == {"traceparent": "00-abc"}
    assert json.loads(env.to_bytes())["traceparent"] == "00-abc"


def test_routing_key_has_four_segments() -> None:
    assert routing_key(make()) == "dossier.submitted.000_00_00_H56.2_002492"
    bare = Envelope(id=str(uuid.uuid4()), source=SOURCE,
                    type="vn.gov.citizen.verification-requested", subject="s",
                    time=datetime.now(UTC), data={})
    assert routing_key(bare) == "citizen.verification-requested.none.none"


@pytest.mark.parametrize(
    "source", ["igate", "VN:GOV:000.00.00.H56:Igate", ["VN:GOV:000.00.00.H56:igate"], None]
)
def test_checks_remembered_for_good_values_still_refuse_bad_ones(source: object) -> None:
    make()  # the good source and type are now remembered
    with pytest.raises(InvalidMessage) as err:
        Envelope.from_dict(_doc(source=source))
    assert err.value.field == "source"
    with pytest.raises(InvalidMessage) as err:
        make(type=["vn.gov.dossier.submitted"])
    assert err.value.code == "client.bad_type"
