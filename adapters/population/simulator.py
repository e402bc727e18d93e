"""A simulator of the national population database: SOAP 1.1 over a real socket, serving its
WSDL at ``?wsdl``, answering XacThucThongTinCongDan and TraCuuThongTinCongDan from a small
in-memory population of fictional citizens.

It is written from the system's side, from dancu.xsd, and shares no code with the adapter's
translation, so that a mistake in one is not hidden by the same mistake in the other.

Switches: ``pause()`` / ``resume()`` (down: connection refused), ``slow(seconds)``, ``hang()``,
``fail_http(status, times)`` (a gateway error page, not SOAP), ``fault(code, faultcode, times)``
(a SOAP fault carrying the system's error code MaLoi), ``malformed(times)`` (a reply that is not
well-formed XML), ``mix_up(times)`` (a look-up answered with another citizen's record),
``require_auth(user, password)`` (HTTP basic).

    python -m adapters.population.simulator --port 8503
"""

from __future__ import annotations

import argparse
import base64
import copy
import threading
import unicodedata
from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from lxml import etree

from hub.settings import PROJECT_ROOT
from hub.simulation import Faults, SimulatedSystem, serve_until_interrupted

NS = "http://dancuquocgia.bca"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
PATH = "/DanCuService"
SCHEMA_DIR = PROJECT_ROOT / "schemas" / "population"
MAX_BODY = 64 * 1024
OPERATIONS = ("XacThucThongTinCongDan", "TraCuuThongTinCongDan")


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


# Fictional citizens, in the system's own shape (element names, XSD order). Numbers follow the
# real layout (province 3 digits, gender/century 1, year 2, serial 6) but belong to nobody.
SEED: tuple[dict[str, Any], ...] = (
    {
        "SoDinhDanh": "001090012345",
        "HoVaTen": {"Ho": "NGUYỄN", "ChuDem": "VĂN", "Ten": "AN"},
        "GioiTinh": "1",
        "DanToc": "01",
        "QuocTich": "VN",
        "NgayThangNamSinh": {"NgayThangNam": "19900115"},
        "QueQuan": {"MaTinhThanh": "01", "MaPhuongXa": "00004", "ChiTiet": "Phường Ba Đình"},
        "ThuongTru": {"MaTinhThanh": "01", "MaPhuongXa": "00004",
                      "ChiTiet": "Số 1 phố Thử Nghiệm, Phường Ba Đình"},
        "NoiOHienTai": {"MaTinhThanh": "01", "MaPhuongXa": "00004",
                        "ChiTiet": "Số 1 phố Thử Nghiệm, Phường Ba Đình"},
        "Cha": {"HoVaTen": "NGUYỄN VĂN BÌNH", "SoDinhDanh": "001060054321"},
        "Me": {"HoVaTen": "TRẦN THỊ CÚC"},
    },
    {
        "SoDinhDanh": "038195004321",
        "SoCMND": "172345678",
        "HoVaTen": {"Ho": "LÊ", "ChuDem": "THỊ", "Ten": "BÌNH"},
        "GioiTinh": "2",
        "DanToc": "06",
        "QuocTich": "VN",
        "NgayThangNamSinh": {"NgayThangNam": "19950320"},
        "QueQuan": {"MaTinhThanh": "38", "MaQuanHuyen": "380", "MaPhuongXa": "14755"},
        "ThuongTru": {"MaTinhThanh": "38", "MaPhuongXa": "14755", "ChiTiet": "Thôn Thử, xã Mẫu"},
        "VoChong": {"HoVaTen": "HOÀNG MINH ĐỨC", "SoDinhDanh": "038090007777"},
    },
    {
        "SoDinhDanh": "040201000777",
        "HoVaTen": {"Ho": "TRẦN", "ChuDem": "MINH", "Ten": "CƯỜNG"},
        "GioiTinh": "1",
        "DanToc": "03",
        "QuocTich": "VN",
        "NgayThangNamSinh": {"NgayThangNam": "20010709"},
        "ThuongTru": {"MaTinhThanh": "40", "MaPhuongXa": "16681"},
    },
    {
        # Born before birth registration kept the day: the year alone is known.
        "SoDinhDanh": "079088000111",
        "HoVaTen": {"Ho": "PHẠM", "Ten": "HÙNG"},
        "GioiTinh": "1",
        "DanToc": "01",
        "QuocTich": "VN",
        "NgayThangNamSinh": {"Nam": "1948"},
        "ThuongTru": {"MaTinhThanh": "79", "MaPhuongXa": "26734"},
    },
)


def hardened_parser() -> etree.XMLParser:
    """No DTD, no entity expansion, no network, default depth and size limits (huge_tree off)."""
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
        huge_tree=False, collect_ids=False, remove_pis=True,
    )


def load_schema(schema_dir: Path = SCHEMA_DIR) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(schema_dir / "dancu.xsd"), hardened_parser()))


def _normal_name(name: str) -> str:
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


def _full_name(citizen: dict[str, Any]) -> str:
    parts = citizen["HoVaTen"]
    return " ".join(p for p in (parts.get("Ho"), parts.get("ChuDem"), parts.get("Ten")) if p)


class _SoapFault(Exception):
    def __init__(self, faultcode: str, message: str, code: str, request_id: str | None = None,
                 status: int = 500) -> None:
        super().__init__(message)
        self.faultcode, self.message, self.code = faultcode, message, code
        self.request_id, self.status = request_id, status


class PopulationSimulator(SimulatedSystem):
    """The system, with switches. ``calls`` counts the operations answered or refused."""

    def __init__(
        self,
        port: int = 0,
        *,
        citizens: tuple[dict[str, Any], ...] | list[dict[str, Any]] = SEED,
        slow: float = 0.0,
        schema_dir: Path = SCHEMA_DIR,
    ) -> None:
        self.citizens = [copy.deepcopy(c) for c in citizens]
        self.calls: list[str] = []  # operation names only: no citizen data kept
        self._lock = threading.Lock()
        self._fault_next = 0
        self._fault: tuple[str, str, str] = ("Server", "DC004", "")
        self._malformed_next = 0
        self._mix_up_next = 0
        self._credentials: tuple[str, str] | None = None
        self._parser = hardened_parser()
        self._schema = load_schema(schema_dir)
        self._wsdl = (schema_dir / "dancu.wsdl").read_bytes()
        self._xsd = (schema_dir / "dancu.xsd").read_bytes()
        super().__init__(self._app(), port=port, faults=Faults(slow_seconds=slow))

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The service address (what the adapter's ``url`` setting takes)."""
        return f"{self.server.base_url}{PATH}"

    @property
    def up(self) -> bool:
        """Listening (started and not paused)."""
        return self.listening

    # --- switches ----------------------------------------------------------------------------

    def slow(self, seconds: float) -> None:
        self.faults.slow_seconds = seconds

    def hang(self, on: bool = True) -> None:
        self.faults.hang = on

    def fail_http(self, status: int = 503, times: int = 1) -> None:
        """The next ``times`` requests get a gateway error page with this status."""
        self.faults.fail_status, self.faults.fail_next = status, times

    def fault(self, code: str = "DC004", faultcode: str = "Server", times: int = 1,
              message: str = "") -> None:
        """The next ``times`` valid requests get a SOAP fault with MaLoi ``code``."""
        with self._lock:
            self._fault = (faultcode, code, message)
            self._fault_next = times

    def malformed(self, times: int = 1) -> None:
        """The next ``times`` valid requests get a 200 reply that is not well-formed XML."""
        with self._lock:
            self._malformed_next = times

    def mix_up(self, times: int = 1) -> None:
        """The next ``times`` successful look-ups answer with another citizen's record (a
        system mixing up requests)."""
        with self._lock:
            self._mix_up_next = times

    def require_auth(self, username: str, password: str) -> None:
        self._credentials = (username, password)

    def reset(self) -> None:
        self.faults.reset()
        with self._lock:
            self._fault_next = self._malformed_next = self._mix_up_next = 0
        self._credentials = None

    def add_citizen(self, citizen: dict[str, Any]) -> None:
        self.citizens.append(copy.deepcopy(citizen))

    # --- the service -------------------------------------------------------------------------

    def _app(self) -> FastAPI:
        app = FastAPI(title="CSDLQG về dân cư (simulator)", docs_url=None, redoc_url=None,
                      openapi_url=None)

        @app.get(PATH)
        async def wsdl(request: Request) -> Response:
            if "wsdl" not in {k.lower() for k in request.query_params}:
                return Response("append ?wsdl for the service description", status_code=404,
                                media_type="text/plain")
            return Response(self._own_wsdl(), media_type="text/xml; charset=utf-8")

        @app.get("/dancu.xsd")
        async def xsd() -> Response:
            return Response(self._xsd, media_type="text/xml; charset=utf-8")

        @app.post(PATH)
        async def soap(request: Request) -> Response:
            # Read the request first: a slow system has received it and is slow to answer.
            raw = await request.body()
            status = await self.faults.apply()
            if status:
                phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ \
                    else "Error"
                return Response(f"<html><body><h1>{status} {phrase}</h1></body></html>",
                                status_code=status, media_type="text/html")
            if not self._authorised(request.headers.get("authorization")):
                return Response("unauthorised", status_code=401, media_type="text/plain",
                                headers={"WWW-Authenticate": 'Basic realm="dancu"'})
            try:
                return self._answer(raw, request.headers.get("soapaction"))
            except _SoapFault as fault:
                return self._fault_response(fault)

        return app

    def _own_wsdl(self) -> bytes:
        doc = etree.fromstring(self._wsdl, self._parser)
        for address in doc.iter("{http://schemas.xmlsoap.org/wsdl/soap/}address"):
            address.set("location", self.url)
        result: bytes = etree.tostring(doc, xml_declaration=True, encoding="utf-8")
        return result

    def _authorised(self, header: str | None) -> bool:
        if self._credentials is None:
            return True
        if not header or not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return (user, password) == self._credentials

    def _answer(self, raw: bytes, soap_action: str | None) -> Response:
        payload = self._payload(raw)
        operation = etree.QName(payload).localname
        self.calls.append(operation)
        request_id = payload.findtext(_q("MaYeuCau"))
        if operation not in OPERATIONS:
            raise _SoapFault("Client", f"unknown operation {operation}", "DC001", request_id)
        action = (soap_action or "").strip().strip('"')
        if action and action != f"{NS}/{operation}":
            raise _SoapFault("Client", f"SOAPAction {action} does not match the body "
                             f"element {operation}", "DC001", request_id)
        if not self._schema.validate(payload):
            error = self._schema.error_log.last_error
            raise _SoapFault("Client", f"request does not match dancu.xsd: {error.message}",
                             "DC001", request_id)
        with self._lock:
            if self._fault_next > 0:
                self._fault_next -= 1
                faultcode, code, message = self._fault
                raise _SoapFault(faultcode, message or f"simulated fault {code}", code, request_id)
            if self._malformed_next > 0:
                self._malformed_next -= 1
                return Response(f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><broken',
                                media_type="text/xml; charset=utf-8")
        citizen = self._find(payload)
        if citizen is not None and operation == "TraCuuThongTinCongDan":
            with self._lock:
                if self._mix_up_next > 0:
                    self._mix_up_next -= 1
                    citizen = next(c for c in self.citizens if c is not citizen)
        answer = etree.Element(_q(f"{operation}Response"), nsmap={"dc": NS})
        etree.SubElement(answer, _q("MaYeuCau")).text = request_id
        if operation == "XacThucThongTinCongDan":
            etree.SubElement(answer, _q("TonTai")).text = "true" if citizen else "false"
        elif citizen is not None:
            self._build(answer, "CongDan", citizen)
        # The simulator's own replies must honour the contract it enforces on requests.
        self._schema.assertValid(answer)
        return self._envelope(answer)

    def _payload(self, raw: bytes) -> etree._Element:
        if len(raw) > MAX_BODY:
            raise _SoapFault("Client", f"request larger than {MAX_BODY} bytes", "DC001")
        try:
            doc = etree.fromstring(raw, self._parser)
        except etree.XMLSyntaxError as exc:
            raise _SoapFault("Client", f"request is not well-formed XML: {exc}", "DC001") from None
        if doc.getroottree().docinfo.doctype:
            raise _SoapFault("Client", "DTDs are not accepted", "DC001")
        if doc.tag == f"{{{SOAP12_ENV}}}Envelope":
            raise _SoapFault("VersionMismatch", "SOAP 1.2 is not served; send SOAP 1.1",
                             "DC001")
        if doc.tag != f"{{{SOAP_ENV}}}Envelope":
            raise _SoapFault("Client", "the root element is not a SOAP 1.1 Envelope", "DC001")
        body = doc.find(f"{{{SOAP_ENV}}}Body")
        children = [] if body is None else [c for c in body if isinstance(c.tag, str)]
        if len(children) != 1:
            raise _SoapFault("Client", "the SOAP Body must hold exactly one element", "DC001")
        return children[0]

    def _find(self, payload: etree._Element) -> dict[str, Any] | None:
        number = payload.findtext(_q("SoDinhDanh"))
        old = payload.findtext(_q("SoCMND"))
        name = _normal_name(payload.findtext(_q("HoVaTen")) or "")
        day = payload.findtext(f"{_q('NgayThangNamSinh')}/{_q('NgayThangNam')}")
        year = payload.findtext(f"{_q('NgayThangNamSinh')}/{_q('Nam')}")
        for citizen in self.citizens:
            if number and citizen["SoDinhDanh"] != number:
                continue
            if old and citizen.get("SoCMND") != old:
                continue
            if _normal_name(_full_name(citizen)) != name:
                continue
            known = citizen["NgayThangNamSinh"]
            known_year = known.get("Nam") or known["NgayThangNam"][:4]
            if day and known.get("NgayThangNam", day) != day:
                continue
            if (day or year or "")[:4] != known_year:
                continue
            return citizen
        return None

    def _build(self, parent: etree._Element, name: str, value: Any) -> None:
        if value is None:
            return
        child = etree.SubElement(parent, _q(name))
        if isinstance(value, dict):
            for key, item in value.items():
                self._build(child, key, item)
        else:
            child.text = str(value)

    def _envelope(self, payload: etree._Element, status: int = 200) -> Response:
        envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
        etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body").append(payload)
        return Response(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"),
                        status_code=status, media_type="text/xml; charset=utf-8")

    def _fault_response(self, fault: _SoapFault) -> Response:
        node = etree.Element(f"{{{SOAP_ENV}}}Fault", nsmap={"soap": SOAP_ENV})
        etree.SubElement(node, "faultcode").text = f"soap:{fault.faultcode}"
        etree.SubElement(node, "faultstring").text = fault.message
        loi = etree.SubElement(etree.SubElement(node, "detail"), _q("Loi"), nsmap={"dc": NS})
        etree.SubElement(loi, _q("MaLoi")).text = fault.code
        etree.SubElement(loi, _q("MoTaLoi")).text = fault.message
        if fault.request_id:
            etree.SubElement(loi, _q("MaYeuCau")).text = fault.request_id[:100]
        return self._envelope(node, status=fault.status)


def make_simulator(**switches: Any) -> PopulationSimulator:
    """``AdapterSpec.make_simulator``: port, citizens, slow, schema_dir."""
    return PopulationSimulator(**switches)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8503)
    parser.add_argument("--slow", type=float, default=0.0, help="answer this many seconds late")
    args = parser.parse_args(argv)
    sim = PopulationSimulator(port=args.port, slow=args.slow)
    sim.start()
    print(f"population database simulator: {sim.url} (WSDL at {sim.url}?wsdl); Ctrl-C to stop",
          flush=True)
    serve_until_interrupted(sim)


if __name__ == "__main__":
    main()
