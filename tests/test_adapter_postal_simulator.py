"""The postal simulator's own surface for demos: advancing an order and the switches over
HTTP, and paging of tracking."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from adapters.postal import adapter
from adapters.postal.simulator import PostalSimulator

ORDER = {
    "CustomerCode": "LIENTHONG",
    "ItemCode": "VNP9001",
    "OrderNumber": "000.00.00.H56-250101-0001",
    "CODAmount": 0,
    "Sender": {"Name": "A", "Address": "B", "Tel": "0912345678"},
    "Receiver": {"Name": "C", "Address": "D", "Tel": "0987654321"},
    "Description": "",
}


@pytest.fixture
def sim() -> Iterator[PostalSimulator]:
    simulator = adapter.make_simulator(webhook_token="")  # type: ignore[misc]
    assert isinstance(simulator, PostalSimulator)
    with simulator:
        yield simulator


def test_order_statuses(sim: PostalSimulator) -> None:
    url = f"{sim.base_url}/api/v1/orders"
    assert httpx.post(url, json=ORDER).json()["Status"] == "100"
    assert httpx.post(url, json=ORDER).json()["Status"] == "101"  # the same order again
    other = {**ORDER, "OrderNumber": "000.00.00.H56-250101-0002"}
    assert httpx.post(url, json=other).json()["Status"] == "102"  # waybill taken
    assert httpx.post(url, json={**ORDER, "CustomerCode": "X"}).json()["Status"] == "105"
    assert httpx.post(url, json={"ItemCode": "Z"}).json()["Status"] == "104"
    sim.reject_order = "103"
    assert httpx.post(url, json={**ORDER, "ItemCode": "VNP9002"}).json()["Status"] == "103"


def test_tracking_pages_and_advance_over_http(sim: PostalSimulator) -> None:
    httpx.post(f"{sim.base_url}/api/v1/orders", json=ORDER)
    for state in (2, 3):
        answer = httpx.post(
            f"{sim.base_url}/sim/advance", json={"ItemCode": "VNP9001", "State": state}
        )
        assert answer.json() == {"pushed": None}  # no webhook URL: nothing pushed
    track = f"{sim.base_url}/api/v1/orders/tracking"
    params: dict[str, str | int] = {"OrderNumber": str(ORDER["OrderNumber"]), "PageSize": 2}
    first = httpx.get(track, params={**params, "PageIndex": 1}).json()["Data"]
    second = httpx.get(track, params={**params, "PageIndex": 2}).json()["Data"]
    assert (first["TotalPage"], len(first["Items"]), len(second["Items"])) == (2, 2, 1)
    times = [i["Time"] for i in first["Items"] + second["Items"]]
    assert times == sorted(times) and len(set(times)) == 3  # one entry per second at most
    assert [i["State"] for i in first["Items"] + second["Items"]] == ["1", "2", "3"]
    missing = httpx.get(track, params={"OrderNumber": "nope"}).json()
    assert missing["Status"] == "104"
    bad = httpx.post(f"{sim.base_url}/sim/advance", json={"ItemCode": "VNP9001", "State": 9})
    assert bad.status_code == 400


def test_switches_over_http(sim: PostalSimulator) -> None:
    state = httpx.post(
        f"{sim.base_url}/sim/switches", json={"page_size": 1, "fail": 1, "used_waybills": ["VNP1"]}
    ).json()
    assert (state["page_size"], state["fail"], state["used_waybills"]) == (1, 1, ["VNP1"])
    assert httpx.post(f"{sim.base_url}/api/v1/orders", json=ORDER).status_code == 503
    assert httpx.post(f"{sim.base_url}/api/v1/orders", json=ORDER).json()["Status"] == "100"
    with pytest.raises(RuntimeError, match="webhook_url"):
        sim.push("VNP9001")
