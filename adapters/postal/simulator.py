"""A postal service simulator speaking the service's JSON protocol on a real socket.

- ``POST <create_path>``: create order; Status "100" accepted, "101" the order already exists
  with this waybill, "102" the waybill is used by another order, "105" unknown customer code;
- ``GET <tracking_path>?OrderNumber=&PageIndex=&PageSize=``: the order's tracking, paged
  (``page_size`` forces a page size, to exercise paging);
- ``advance(waybill, state)`` (or ``POST /sim/advance``): a new collection state for an order,
  pushed to ``webhook_url`` when set, as the service's webhook does; ``push(waybill)`` pushes
  the latest entry again.

Switches: ``down()``/``up()`` (connection refused), ``faults.slow_seconds``, ``faults.fail_next``
(HTTP 5xx), ``reject_order`` (a Status every order is refused with, e.g. "103"),
``used_waybills`` (numbers the service says are used elsewhere). Also over HTTP:
``GET /sim/state``, ``POST /sim/switches``.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from hub.simulation import SwitchedSystem, Switches, command_line, serve_until_interrupted

VN = ZoneInfo("Asia/Ho_Chi_Minh")
WIRE_TIME = "%Y%m%d%H%M%S"
STATES = (0, 1, 2, 3, 4)


@dataclass
class SimOrder:
    order_number: str
    item_code: str
    customer_code: str
    cod_amount: int
    sender: dict[str, Any]
    receiver: dict[str, Any]
    description: str
    entries: list[dict[str, Any]] = field(default_factory=list)


class PostalSimulator(SwitchedSystem):
    own: ClassVar[Switches] = {
        "reject_order": str, "page_size": int, "webhook_url": str,
        "used_waybills": lambda value: {str(v) for v in value}}

    def __init__(
        self,
        *,
        customer_code: str = "LIENTHONG",
        webhook_url: str = "",
        webhook_token: str = "",
        webhook_token_header: str = "X-Postal-Token",
        create_path: str = "/api/v1/orders",
        tracking_path: str = "/api/v1/orders/tracking",
        page_size: int = 0,
        reject_order: str = "",
        **shared: Any,  # port, slow, fail, fail_status, down (hub.simulation.SwitchedSystem)
    ) -> None:
        self.customer_code = customer_code
        self.webhook_url = webhook_url
        self.webhook_token = webhook_token
        self.webhook_token_header = webhook_token_header
        self.create_path = create_path
        self.tracking_path = tracking_path
        self.page_size = page_size  # 0: as the caller asks
        self.reject_order = reject_order
        self.used_waybills: set[str] = set()
        self.orders: dict[str, SimOrder] = {}
        self.requests: list[dict[str, Any]] = []
        self.webhook_statuses: list[int] = []
        self._lock = threading.Lock()
        self._serials = itertools.count(1)
        super().__init__(self._app(), **shared)

    def reset_switches(self) -> None:
        self.reject_order, self.page_size = "", 0
        self.used_waybills.clear()
        self.requests.clear()
        self.webhook_statuses.clear()

    # -- protocol ------------------------------------------------------------------------------
    def _next_time(self, order: SimOrder) -> str:
        # Wire times have whole seconds; entries of one order never share one, as on the
        # real service where each is a scan at a post office.
        now = datetime.now(UTC).astimezone(VN).replace(microsecond=0, tzinfo=None)
        if order.entries:
            last = datetime.strptime(order.entries[-1]["Time"], WIRE_TIME)
            now = max(now, last + timedelta(seconds=1))
        return now.strftime(WIRE_TIME)

    def handle_create(self, doc: dict[str, Any]) -> dict[str, Any]:
        def answer(status: str, message: str, data: Any = None) -> dict[str, Any]:
            return {"Status": status, "Message": message, "Data": data}

        missing = [
            k
            for k in ("CustomerCode", "ItemCode", "OrderNumber", "Sender", "Receiver")
            if not doc.get(k)
        ]
        if missing:
            return answer("104", f"Thieu truong {', '.join(missing)}")
        if doc["CustomerCode"] != self.customer_code:
            return answer("105", "Ma khach hang khong ton tai")
        if self.reject_order:
            return answer(self.reject_order, "Don hang bi tu choi (mo phong)")
        item = str(doc["ItemCode"])
        with self._lock:
            known = self.orders.get(item)
            if known is not None:
                if known.order_number == doc["OrderNumber"]:
                    return answer("101", "Don hang da ton tai", {"ItemCode": item})
                return answer("102", "So hieu buu gui da duoc su dung")
            if item in self.used_waybills:
                return answer("102", "So hieu buu gui da duoc su dung")
            order = SimOrder(
                order_number=str(doc["OrderNumber"]),
                item_code=item,
                customer_code=str(doc["CustomerCode"]),
                cod_amount=int(doc.get("CODAmount") or 0),
                sender=dict(doc["Sender"]),
                receiver=dict(doc["Receiver"]),
                description=str(doc.get("Description", "")),
            )
            order.entries.append(
                {
                    "ItemCode": item,
                    "State": "1",
                    "Time": self._next_time(order),
                    "Note": "Da tiep nhan don hang",
                }
            )
            self.orders[item] = order
        return answer("100", "Thanh cong", {"ItemCode": item, "OrderNumber": order.order_number})

    def handle_tracking(self, order_number: str, page: int, size: int) -> dict[str, Any]:
        with self._lock:
            entries = [
                e for o in self.orders.values() if o.order_number == order_number for e in o.entries
            ]
        if not entries:
            return {"Status": "104", "Message": "Khong tim thay don hang", "Data": None}
        entries.sort(key=lambda e: e["Time"])
        size = self.page_size or max(1, size)
        total = math.ceil(len(entries) / size)
        page = max(1, page)
        return {
            "Status": "100",
            "Message": "Thanh cong",
            "Data": {
                "OrderNumber": order_number,
                "PageIndex": page,
                "TotalPage": total,
                "Items": entries[(page - 1) * size : page * size],
            },
        }

    def advance(
        self, item_code: str, state: int, note: str = "", *, push: bool | None = None
    ) -> int | None:
        """Record a new collection state; push it to the hub when ``webhook_url`` is set (or
        ``push`` says so). Returns the hub's HTTP status, or None when nothing was pushed."""
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {state!r}")
        with self._lock:
            order = self.orders.get(item_code)
            if order is None:
                raise KeyError(f"no order with waybill {item_code!r} at the simulator")
            order.entries.append(
                {
                    "ItemCode": item_code,
                    "State": str(state),
                    "Time": self._next_time(order),
                    "Note": note,
                }
            )
        if push if push is not None else bool(self.webhook_url):
            return self.push(item_code)
        return None

    def webhook_body(self, item_code: str) -> dict[str, Any]:
        order = self.orders[item_code]
        return {"OrderNumber": order.order_number, **order.entries[-1]}

    def push(self, item_code: str) -> int:
        """POST the order's latest entry to the hub's webhook URL."""
        if not self.webhook_url:
            raise RuntimeError("the simulator has no webhook_url to push tracking to")
        headers = {self.webhook_token_header: self.webhook_token} if self.webhook_token else {}
        with httpx.Client(timeout=10.0) as http:
            status = http.post(
                self.webhook_url, json=self.webhook_body(item_code), headers=headers
            ).status_code
        self.webhook_statuses.append(status)
        return status

    def _app(self) -> FastAPI:
        sim, app = self, self.new_app("Postal service simulator")

        sim.json_route(app, sim.create_path, lambda doc, _: sim.handle_create(doc),
                       sim.requests)

        @app.get(sim.tracking_path)
        async def track(request: Request) -> Response:
            if (failed := await sim.faulted()) is not None:
                return failed
            q = request.query_params
            try:
                page, size = int(q.get("PageIndex", "1")), int(q.get("PageSize", "50"))
            except ValueError:
                return JSONResponse(
                    {"error": "PageIndex and PageSize are numbers"}, status_code=400
                )
            sim.requests.append(dict(q))
            return JSONResponse(sim.handle_tracking(q.get("OrderNumber", ""), page, size))

        @app.post("/sim/advance")
        async def advance(request: Request) -> Response:
            doc = await request.json()
            try:
                status = await _in_thread(
                    sim.advance, str(doc["ItemCode"]), int(doc["State"]), str(doc.get("Note", ""))
                )
            except (KeyError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse({"pushed": status})

        sim.add_switch_routes(app)

        return app

    def state(self) -> dict[str, Any]:
        return {"orders": {k: asdict(v) for k, v in self.orders.items()}}


async def _in_thread(fn: Any, *args: Any) -> Any:
    import asyncio

    # advance() may push to the hub with a blocking client: keep the server's loop free.
    return await asyncio.to_thread(fn, *args)


def make_simulator(**switches: Any) -> PostalSimulator:
    switches.setdefault("webhook_token", os.environ.get("LIENTHONG_POSTAL_WEBHOOK_TOKEN", ""))
    return PostalSimulator(**switches)


def main(argv: list[str] | None = None) -> None:
    _, args = command_line(
        "Postal service", 8703, argv, customer={"default": "LIENTHONG"},
        webhook_url={"default": "http://127.0.0.1:8080/v1/callbacks/postal"},
        page_size={"type": int, "default": 0})
    serve_until_interrupted(make_simulator(
        port=args.port, customer_code=args.customer, webhook_url=args.webhook_url,
        page_size=args.page_size), "postal service")


if __name__ == "__main__":
    main()
