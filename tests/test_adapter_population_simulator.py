"""The population database simulator itself: its WSDL at ?wsdl, its request validation on a
hardened parser, and its SOAP 1.1 faults. Over a real socket, with plain httpx and zeep."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import zeep
from lxml import etree

from adapters.population import adapter
from adapters.population.simulator import PopulationSimulator

NS = "http://dancuquocgia.bca"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
ACTION = f"{NS}/XacThucThongTinCongDan"


@pytest.fixture(scope="module")
def sim() -> Iterator[PopulationSimulator]:
    simulator = adapter.make_simulator() if adapter.make_simulator else None
    assert isinstance(simulator, PopulationSimulator)
    with simulator:
        yield simulator


def envelope(number: str = "001090012345", *, birth: str = "<dc:NgayThangNam>19900115"
             "</dc:NgayThangNam>", name: str = "NGUYỄN VĂN AN", prolog: str = "") -> bytes:
    return (
        f'{prolog}<soap:Envelope xmlns:soap="{SOAP_ENV}" xmlns:dc="{NS}"><soap:Body>'
        "<dc:XacThucThongTinCongDan><dc:MaYeuCau>r1</dc:MaYeuCau><dc:MaDVC>2.002492</dc:MaDVC>"
        "<dc:MaTichHop>LT</dc:MaTichHop><dc:MaCanBo>CB</dc:MaCanBo>"
        f"<dc:SoDinhDanh>{number}</dc:SoDinhDanh><dc:HoVaTen>{name}</dc:HoVaTen>"
        f"<dc:NgayThangNamSinh>{birth}</dc:NgayThangNamSinh>"
        "</dc:XacThucThongTinCongDan></soap:Body></soap:Envelope>"
    ).encode()


def post(sim: PopulationSimulator, body: bytes, action: str = ACTION) -> httpx.Response:
    return httpx.post(sim.url, content=body, timeout=5,
                      headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": action})


def fault_of(response: httpx.Response) -> tuple[str, str, str]:
    """(faultcode, MaLoi, faultstring) of a fault reply."""
    assert response.status_code == 500
    doc = etree.fromstring(response.content)
    fault = doc.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert fault is not None
    return (fault.findtext("faultcode") or "", fault.findtext(f"detail/{{{NS}}}Loi/{{{NS}}}MaLoi")
            or "", fault.findtext("faultstring") or "")


def test_serves_its_wsdl_with_its_own_address(sim: PopulationSimulator) -> None:
    response = httpx.get(f"{sim.url}?wsdl", timeout=5)
    assert response.status_code == 200
    doc = etree.fromstring(response.content)
    address = doc.find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address is not None and address.get("location") == sim.url
    assert httpx.get(sim.url, timeout=5).status_code == 404


def test_a_stock_zeep_client_works_from_the_served_wsdl(sim: PopulationSimulator) -> None:
    # Fetches dancu.xsd beside the WSDL, over HTTP.
    client: Any = zeep.Client(f"{sim.url}?wsdl")  # type: ignore[no-untyped-call]
    reply = client.service.XacThucThongTinCongDan(
        MaYeuCau="r1", MaDVC="2.002492", MaTichHop="LT", MaCanBo="CB",
        SoDinhDanh="001090012345", HoVaTen="Nguyễn Văn An",
        NgayThangNamSinh={"NgayThangNam": "19900115"},
    )
    assert (reply.MaYeuCau, reply.TonTai) == ("r1", True)


def test_valid_request_by_hand(sim: PopulationSimulator) -> None:
    response = post(sim, envelope())
    assert response.status_code == 200
    doc = etree.fromstring(response.content)
    assert doc.findtext(f".//{{{NS}}}TonTai") == "true"
    assert post(sim, envelope(birth="<dc:Nam>1991</dc:Nam>")).content.count(b"false") == 1


@pytest.mark.parametrize(
    ("body", "element"),
    [
        (envelope("12345"), "SoDinhDanh"),
        (envelope(birth="<dc:NgayThangNam>1990-01-15</dc:NgayThangNam>"), "NgayThangNam"),
        (envelope(birth=""), "NgayThangNamSinh"),
        (envelope(name=""), "HoVaTen"),
    ],
    ids=["short-id", "date-format", "no-birth", "empty-name"],
)
def test_requests_are_validated_against_the_xsd(
    sim: PopulationSimulator, body: bytes, element: str
) -> None:
    faultcode, code, text = fault_of(post(sim, body))
    assert (faultcode, code) == ("soap:Client", "DC001")
    assert element in text


def test_dtd_and_entities_are_refused(sim: PopulationSimulator) -> None:
    prolog = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/hostname">'
              '<!ENTITY lol "lol">]>')
    response = post(sim, envelope(name="&xxe;&lol;", prolog=prolog))
    faultcode, code, text = fault_of(response)
    assert (faultcode, code) == ("soap:Client", "DC001")
    assert "DTD" in text
    with open("/etc/hostname", "rb") as fh:
        hostname = fh.read().strip()
    assert not hostname or hostname not in response.content


def test_not_xml_soap12_and_wrong_action(sim: PopulationSimulator) -> None:
    assert fault_of(post(sim, b"<not xml"))[1] == "DC001"
    soap12 = envelope().replace(SOAP_ENV.encode(), b"http://www.w3.org/2003/05/soap-envelope")
    assert fault_of(post(sim, soap12))[0] == "soap:VersionMismatch"
    faultcode, code, text = fault_of(post(sim, envelope(), action=f"{NS}/TraCuuThongTinCongDan"))
    assert (faultcode, code) == ("soap:Client", "DC001")
    assert "SOAPAction" in text
    assert fault_of(post(sim, b"x" * 70_000))[1] == "DC001"


def test_switches(sim: PopulationSimulator) -> None:
    try:
        sim.fault("DC003", "Server", times=1)
        assert fault_of(post(sim, envelope()))[:2] == ("soap:Server", "DC003")
        assert post(sim, envelope()).status_code == 200  # only once
        sim.malformed()
        response = post(sim, envelope())
        assert response.status_code == 200
        with pytest.raises(etree.XMLSyntaxError):
            etree.fromstring(response.content)
        sim.fail_http(502)
        response = post(sim, envelope())
        assert response.status_code == 502 and b"<html>" in response.content
        sim.require_auth("hub", "pw")
        assert post(sim, envelope()).status_code == 401
        ok = httpx.post(sim.url, content=envelope(), auth=("hub", "pw"), timeout=5,
                        headers={"Content-Type": "text/xml", "SOAPAction": ACTION})
        assert ok.status_code == 200
    finally:
        sim.reset()


def test_pause_refuses_connections(sim: PopulationSimulator) -> None:
    sim.pause()
    try:
        assert not sim.up
        with pytest.raises(httpx.ConnectError):
            post(sim, envelope())
    finally:
        sim.resume()
    assert sim.up
    assert post(sim, envelope()).status_code == 200
