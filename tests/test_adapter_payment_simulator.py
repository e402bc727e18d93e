"""The gateway simulator's own surface for demos: the citizen's payment page and the switches
over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from adapters.payment import adapter
from adapters.payment.mapping import checksum
from adapters.payment.simulator import PaymentSimulator

SECRET = "simulator-test-secret"


@pytest.fixture
def sim() -> Iterator[PaymentSimulator]:
    simulator = adapter.make_simulator(secret=SECRET)  # type: ignore[misc]
    assert isinstance(simulator, PaymentSimulator)
    with simulator:
        yield simulator


def init(sim: PaymentSimulator, reference: str) -> dict[str, object]:
    message = checksum.sign(
        {
            "LoaiBanTin": "INIT",
            "PhienBan": "1.0.6",
            "MaDoiTac": "LIENTHONG",
            "MaThamChieu": reference,
            "SoTien": 20000,
            "LoaiHinhThanhToan": "PAY",
            "MaKenhThanhToan": "DVCQG",
            "MaThietBi": "WEB",
            "NgonNgu": "vi-VN",
            "MaTienTe": "VND",
            "MaNganHang": "",
            "ThongTinGiaoDich": "Le phi",
            "ThoiGianGD": "20250101083000",
            "Ip": "127.0.0.1",
            "ThongTinBienLai": {"MaHoSo": "000.00.00.H56-250101-0001"},
        },
        sim.orders["init"],
        SECRET,
    )
    reply = httpx.post(f"{sim.base_url}/api/v1/payment/init", json=message).json()
    assert isinstance(reply, dict)
    return reply


def test_payment_page_pays_and_fails(sim: PaymentSimulator) -> None:
    reply = init(sim, "REF-PAGE")
    assert reply["MaLoi"] == "00"
    assert checksum.matches(reply, sim.orders["init_reply"], SECRET)
    page = httpx.get(str(reply["UrlThanhToan"]))
    assert page.status_code == 200 and "20,000 VND" in page.text
    done = httpx.post(str(reply["UrlThanhToan"]), data={"outcome": "failed"})
    assert done.status_code == 200 and "failed" in done.text
    assert sim.transactions["REF-PAGE"].status == "failed"
    assert httpx.get(f"{sim.base_url}/pay/NO-SUCH").status_code == 404


def test_init_with_a_bad_checksum_is_refused(sim: PaymentSimulator) -> None:
    sim.secret = "another"
    reply = init(sim, "REF-BAD")
    assert reply["MaLoi"] == "01"
    assert "REF-BAD" not in sim.transactions


def test_switches_over_http(sim: PaymentSimulator) -> None:
    state = httpx.post(
        f"{sim.base_url}/sim/switches", json={"fail": 1, "fail_status": 502, "outcome": "pending"}
    ).json()
    assert (state["fail"], state["fail_status"], state["outcome"]) == (1, 502, "pending")
    assert httpx.post(f"{sim.base_url}/api/v1/payment/query", json={}).status_code == 502
    init(sim, "REF-SW")
    assert (
        httpx.get(f"{sim.base_url}/sim/state").json()["transactions"]["REF-SW"]["amount"] == 20000
    )
    with pytest.raises(ValueError, match="unknown switch"):
        sim.set_switches(colour="red")
