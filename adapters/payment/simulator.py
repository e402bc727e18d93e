"""A payment gateway simulator speaking the gateway's JSON protocol on a real socket.

- ``POST <init_path>``: INIT; checks MaXacThuc, records the transaction, replies with the URL of
  a payment page (``GET /pay/<reference>``) where a person can pay or fail it;
- ``POST <query_path>``: QUERY; replies TrangThaiGD 1 paid, 3 pending, 4 failed;
- ``pay(reference)`` (or ``POST /pay/<reference>``): settle the transaction and call back the
  hub at ``callback_url`` like the real gateway.

Switches: ``down()``/``up()`` (connection refused), ``faults.slow_seconds``, ``faults.fail_next``
(HTTP 5xx), ``refuse`` (a MaLoi every INIT is refused with), ``wrong_checksum`` (replies and
callbacks carry a bad MaXacThuc), ``duplicate_callback`` (each callback is sent twice),
``outcome`` ("paid", "failed", or "pending": the payment never completes and no callback is
sent), ``currency`` (MaTienTe of callbacks). A test that needs the gateway to report another
amount than was initiated changes ``transactions[reference].amount``: callbacks and QUERY
replies report it, correctly sealed. Inspect and flip the switches over HTTP too:
``GET /sim/state``, ``POST /sim/switches``.
"""

from __future__ import annotations

import html
import itertools
import os
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from adapters.payment.mapping import checksum, parse_checksums
from hub.settings import PROJECT_ROOT
from hub.simulation import SwitchedSystem, Switches, command_line, one_of, serve_until_interrupted
from hub.tomlmap import read as load_toml

VN = ZoneInfo("Asia/Ho_Chi_Minh")
OUTCOMES = ("paid", "failed", "pending")
STATE_CODES = {"pending": "3", "paid": "1", "failed": "4"}
DECLINED = "51"  # MaLoi of a failed payment in callbacks


def _wire_now() -> str:
    return datetime.now(UTC).astimezone(VN).strftime("%Y%m%d%H%M%S")


@dataclass
class SimTransaction:
    reference: str
    amount: int
    description: str
    bank: str
    status: str = "pending"
    transaction_id: str = ""
    paid_at: str = ""
    dossier_code: str = ""


class PaymentSimulator(SwitchedSystem):
    own: ClassVar[Switches] = {
        "wrong_checksum": bool, "duplicate_callback": bool, "outcome": one_of(*OUTCOMES),
        "refuse": str, "currency": str, "callback_url": str}

    def __init__(
        self,
        *,
        secret: str,
        partner_code: str = "LIENTHONG",
        callback_url: str = "",
        init_path: str = "/api/v1/payment/init",
        query_path: str = "/api/v1/payment/query",
        checksums_file: Path | None = None,
        wrong_checksum: bool = False,
        duplicate_callback: bool = False,
        outcome: str = "paid",
        refuse: str = "",
        currency: str = "VND",
        **shared: Any,  # port, slow, fail, fail_status, down (hub.simulation.SwitchedSystem)
    ) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        self.secret = self._configured_secret = secret
        self.partner_code = partner_code
        self.callback_url = callback_url
        self.init_path = init_path
        self.query_path = query_path
        self.orders = parse_checksums(
            load_toml(checksums_file or PROJECT_ROOT / "mappings" / "payment" / "checksums.toml")
        )
        self.wrong_checksum = wrong_checksum
        self.duplicate_callback = duplicate_callback
        self.outcome = outcome
        self.refuse = refuse  # a MaLoi every INIT is refused with ("" = accept)
        self.currency = currency  # MaTienTe of callbacks (another one: a gateway gone wrong)
        self.transactions: dict[str, SimTransaction] = {}
        self.requests: list[dict[str, Any]] = []  # every INIT and QUERY received, as sent
        self.callback_statuses: list[int] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        super().__init__(self._app(), **shared)

    def reset_switches(self) -> None:
        self.wrong_checksum = self.duplicate_callback = False
        self.outcome, self.refuse, self.currency = "paid", "", "VND"
        self.secret = self._configured_secret
        self.requests.clear()
        self.callback_statuses.clear()

    # -- protocol ------------------------------------------------------------------------------
    def _seal(self, message: dict[str, Any], kind: str) -> dict[str, Any]:
        signed = checksum.sign(message, self.orders[kind], self.secret)
        if self.wrong_checksum:
            signed[checksum.field] = "0" * 64
        return signed

    def _error(self, kind: str, code: str, text: str, doc: dict[str, Any]) -> dict[str, Any]:
        reply = {
            "LoaiBanTin": kind,
            "MaLoi": code,
            "MoTaLoi": text,
            "MaDoiTac": str(doc.get("MaDoiTac", "")),
            "MaThamChieu": str(doc.get("MaThamChieu", "")),
            "ThoiGianGD": _wire_now(),
        }
        return self._seal(reply, "init_reply" if kind == "INIT" else "query_reply")

    def handle_init(self, doc: dict[str, Any], base_url: str) -> dict[str, Any]:
        if not checksum.matches(doc, self.orders["init"], self.secret):
            return self._error("INIT", "01", "MaXacThuc khong hop le", doc)
        if doc.get("MaDoiTac") != self.partner_code:
            return self._error("INIT", "05", "MaDoiTac khong ton tai", doc)
        if self.refuse:
            return self._error("INIT", self.refuse, "Tu choi (mo phong)", doc)
        reference = str(doc.get("MaThamChieu", ""))
        amount = doc.get("SoTien")
        if not reference or not isinstance(amount, int) or amount <= 0:
            return self._error("INIT", "02", "Du lieu khong hop le", doc)
        receipt = doc.get("ThongTinBienLai") or {}
        with self._lock:
            known = self.transactions.get(reference)
            if known is not None and known.amount != amount:
                return self._error("INIT", "03", "MaThamChieu da ton tai", doc)
            if known is None:
                self.transactions[reference] = SimTransaction(
                    reference=reference,
                    amount=amount,
                    description=str(doc.get("ThongTinGiaoDich", "")),
                    bank=str(doc.get("MaNganHang") or "VCB"),
                    dossier_code=str(receipt.get("MaHoSo", "")),
                )
        reply = {
            "LoaiBanTin": "INIT",
            "MaLoi": "00",
            "MaDoiTac": self.partner_code,
            "MaThamChieu": reference,
            "UrlThanhToan": f"{base_url}/pay/{reference}",
            "ThoiGianGD": _wire_now(),
        }
        return self._seal(reply, "init_reply")

    def handle_query(self, doc: dict[str, Any]) -> dict[str, Any]:
        if not checksum.matches(doc, self.orders["query"], self.secret):
            return self._error("QUERY", "01", "MaXacThuc khong hop le", doc)
        reference = str(doc.get("MaThamChieu", ""))
        with self._lock:
            tx = self.transactions.get(reference)
        if tx is None:
            return self._error("QUERY", "04", "Khong tim thay giao dich", doc)
        reply = {
            "LoaiBanTin": "QUERY",
            "MaLoi": "00",
            "MaDoiTac": self.partner_code,
            "MaThamChieu": reference,
            "TrangThaiGD": STATE_CODES[tx.status],
            "SoTien": tx.amount,
            "MaGiaoDich": tx.transaction_id,
            "MaNganHang": tx.bank,
            "ThoiGianGD": tx.paid_at,
        }
        return self._seal(reply, "query_reply")

    def settle(self, reference: str, outcome: str | None = None) -> dict[str, Any] | None:
        """Decide the transaction (as the citizen's bank would) and return the callback body
        the gateway sends, or None when it stays pending."""
        outcome = outcome or self.outcome
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        with self._lock:
            tx = self.transactions.get(reference)
            if tx is None:
                raise KeyError(f"no transaction {reference!r} was initiated at the simulator")
            if outcome == "pending":
                return None
            if tx.status == "pending" or tx.status != outcome:
                tx.status = outcome
                tx.transaction_id = f"GD{next(self._ids):010d}"
                tx.paid_at = _wire_now()
        body = {
            "LoaiBanTin": "PAY",
            "MaLoi": "00" if outcome == "paid" else DECLINED,
            "MaDoiTac": self.partner_code,
            "MaThamChieu": reference,
            "SoTien": tx.amount,
            "MaTienTe": self.currency,
            "MaGiaoDich": tx.transaction_id,
            "MaNganHang": tx.bank,
            "ThoiGianGD": tx.paid_at,
            "ThongTinGiaoDich": tx.description,
        }
        return self._seal(body, "callback")

    def pay(
        self, reference: str, outcome: str | None = None, *, callback: bool = True
    ) -> list[int]:
        """Settle ``reference`` and call the hub back (twice with ``duplicate_callback``).
        Returns the hub's HTTP statuses. ``callback=False`` settles silently: the callback
        was lost, only QUERY will tell."""
        body = self.settle(reference, outcome)
        if body is None or not callback:
            return []
        if not self.callback_url:
            raise RuntimeError("the simulator has no callback_url to call the hub back on")
        statuses = []
        with httpx.Client(timeout=10.0) as http:
            for _ in range(2 if self.duplicate_callback else 1):
                statuses.append(http.post(self.callback_url, json=body).status_code)
        self.callback_statuses.extend(statuses)
        return statuses

    async def _pay_async(self, reference: str, outcome: str) -> list[int]:
        body = self.settle(reference, outcome)
        if body is None or not self.callback_url:
            return []
        statuses = []
        async with httpx.AsyncClient(timeout=10.0) as http:
            for _ in range(2 if self.duplicate_callback else 1):
                statuses.append((await http.post(self.callback_url, json=body)).status_code)
        self.callback_statuses.extend(statuses)
        return statuses

    def _app(self) -> FastAPI:
        sim, app = self, self.new_app("Payment gateway simulator")

        sim.json_route(app, sim.init_path, lambda doc, request: sim.handle_init(
            doc, str(request.base_url).rstrip("/")), sim.requests)
        sim.json_route(app, sim.query_path, lambda doc, _: sim.handle_query(doc), sim.requests)

        @app.get("/pay/{reference}")
        async def page(reference: str) -> Response:
            tx = sim.transactions.get(reference)
            if tx is None:
                return HTMLResponse("<p>Giao dich khong ton tai</p>", status_code=404)
            ref = html.escape(reference)
            return HTMLResponse(
                f"<h1>Thanh toan {ref}</h1><p>{tx.amount:,} VND - {html.escape(tx.description)}</p>"
                f"<p>Trang thai: {tx.status}</p>"
                f'<form method="post"><button name="outcome" value="paid">Thanh toan</button>'
                f'<button name="outcome" value="failed">Huy</button></form>'
            )

        @app.post("/pay/{reference}")
        async def pay(reference: str, request: Request) -> Response:
            form = parse_qs((await request.body()).decode())
            outcome = (form.get("outcome") or [sim.outcome])[0]
            if reference not in sim.transactions or outcome not in OUTCOMES:
                return HTMLResponse("<p>Yeu cau khong hop le</p>", status_code=400)
            statuses = await sim._pay_async(reference, outcome)
            return HTMLResponse(f"<p>Ket qua: {outcome}; callback: {statuses}</p>")

        sim.add_switch_routes(app)

        return app

    def state(self) -> dict[str, Any]:
        return {"transactions": {k: asdict(v) for k, v in self.transactions.items()}}


def make_simulator(**switches: Any) -> PaymentSimulator:
    """Build a simulator; ``secret`` defaults to the value of LIENTHONG_PAYMENT_SECRET."""
    switches.setdefault("secret", os.environ.get("LIENTHONG_PAYMENT_SECRET", ""))
    if not switches["secret"]:
        raise ValueError(
            "the simulator needs the shared secret: pass secret=... or set LIENTHONG_PAYMENT_SECRET"
        )
    return PaymentSimulator(**switches)


def main(argv: list[str] | None = None) -> None:
    parser, args = command_line(
        "Payment gateway", 8702, argv, partner={"default": "LIENTHONG"},
        callback_url={"default": "http://127.0.0.1:8080/v1/callbacks/payment"},
        secret_env={"default": "LIENTHONG_PAYMENT_SECRET"},
        outcome={"choices": OUTCOMES, "default": "paid"})
    secret = os.environ.get(args.secret_env, "")
    if not secret:
        parser.error(f"set {args.secret_env} to the shared checksum secret")
    serve_until_interrupted(PaymentSimulator(
        port=args.port, secret=secret, partner_code=args.partner, callback_url=args.callback_url,
        outcome=args.outcome), "payment gateway")


if __name__ == "__main__":
    main()
