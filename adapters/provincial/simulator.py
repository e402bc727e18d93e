"""A simulator of a provincial one-stop system, speaking its REST/JSON on a real socket.

It accepts dossiers (``POST /api/v1/hoso``, checked against schemas/provincial, recorded;
``GET /api/v1/hoso`` and ``GET /api/v1/hoso/<maHoSo>`` to inspect), and pushes status changes
and processing steps to the hub in its own format (``push``), by hand or automatically when a
dossier arrives (``auto_push_url``: a "received" status, as a real one-stop desk would).

Switches: ``pause()``/``resume()`` (down: connection refused), ``faults`` (slow, hang, the next
N requests fail with a 5xx), ``reject_next(message, field)`` (the next dossiers are refused
with a 4xx and a validation message). The same switches are reachable over HTTP under
``/_sim/`` for the demo:

    python -m adapters.provincial.simulator --port 8101 \
        --push-url http://127.0.0.1:8080/v1/callbacks/provincial
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from hub.contracts import Contract, load_contract
from hub.errors import ValidationError
from hub.settings import PROJECT_ROOT
from hub.simulation import SimulatedSystem, serve_until_interrupted

SUBMIT_PATH = "/api/v1/hoso"
VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
TIME_FORMAT = "%d/%m/%Y %H:%M:%S"
OK = "0"
INVALID = "DU_LIEU_KHONG_HOP_LE"
UNAUTHORIZED = "KHONG_CO_QUYEN"
NOT_FOUND = "KHONG_TIM_THAY"


def answer(code: str, message: str, status: int = 200, **extra: Any) -> JSONResponse:
    return JSONResponse({"maLoi": code, "thongBao": message, **extra}, status_code=status)


def province_time(at: datetime | None = None) -> str:
    return (at or datetime.now(VN_TZ)).astimezone(VN_TZ).strftime(TIME_FORMAT)


def status_update(
    dossier_code: str, status: str, *, previous: str | None = None,
    at: datetime | None = None, sequence: int | None = None, officer: str | None = None,
    note: str | None = None, procedure_code: str | None = None,
) -> dict[str, Any]:
    """A status change as this province writes it (status words of its own vocabulary)."""
    doc: dict[str, Any] = {"loaiCapNhat": "TRANG_THAI", "maHoSo": dossier_code,
                           "trangThai": status, "thoiGian": province_time(at)}
    for key, value in (("trangThaiTruoc", previous), ("soThuTu", sequence), ("canBo", officer),
                       ("ghiChu", note), ("maThuTuc", procedure_code)):
        if value is not None:
            doc[key] = value
    return doc


def progress_update(
    dossier_code: str, content: str, *, officer: str = "Cán bộ một cửa",
    status: str = "DANG_XU_LY", at: datetime | None = None, sequence: int | None = None,
    department: str | None = None, title: str | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {"loaiCapNhat": "TIEN_DO", "maHoSo": dossier_code,
                           "canBoXuLy": officer, "noiDung": content, "trangThai": status,
                           "thoiDiemXuLy": province_time(at)}
    for key, value in (("soThuTu", sequence), ("phongBan", department), ("chucDanh", title)):
        if value is not None:
            doc[key] = value
    return doc


@dataclass
class _Rejection:
    message: str
    field: str | None
    status: int


@dataclass
class ProvincialState:
    dossiers: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # every accepted POST
    pushes: list[dict[str, Any]] = field(default_factory=list)  # what was pushed, and the answer
    rejections: list[_Rejection] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ProvincialSimulator(SimulatedSystem):
    def __init__(
        self,
        *,
        api_key: str | None = None,
        submit_path: str = SUBMIT_PATH,
        auto_push_url: str | None = None,
        push_headers: dict[str, str] | None = None,
        schemas_dir: Path = PROJECT_ROOT / "schemas" / "provincial",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.auto_push_url = auto_push_url
        self.push_headers = dict(push_headers or {})
        self.state = ProvincialState()
        self.contract: Contract = load_contract(schemas_dir)
        super().__init__(self._app(submit_path), host=host, port=port)
        self._tasks: set[asyncio.Task[tuple[int, str]]] = set()

    # ------------------------------------------------------------------ lifecycle and switches

    def reject_next(self, message: str, field: str | None = None, *, status: int = 422,
                    count: int = 1) -> None:
        """The next ``count`` dossiers are refused with ``status`` and this message."""
        with self.state.lock:
            self.state.rejections.extend([_Rejection(message, field, status)] * count)

    def reset(self) -> None:
        self.faults.reset()
        with self.state.lock:
            self.state.rejections.clear()

    # ------------------------------------------------------------------ inspection

    def dossier(self, code: str) -> dict[str, Any] | None:
        with self.state.lock:
            found = self.state.dossiers.get(code)
            return json.loads(json.dumps(found)) if found is not None else None

    @property
    def deliveries(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.deliveries)

    @property
    def pushes(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.pushes)

    # ------------------------------------------------------------------ pushing to the hub

    def push(self, url: str, updates: dict[str, Any] | list[dict[str, Any]],
             headers: dict[str, str] | None = None) -> httpx.Response:
        """Push one update, or a batch, to the hub (from the caller's thread)."""
        body = updates if isinstance(updates, dict) else {"danhSach": updates}
        response = httpx.post(url, json=body, headers={**self.push_headers, **(headers or {})},
                              timeout=10.0)
        self._record_push(url, body, response.status_code, response.text)
        return response

    async def apush(self, url: str, updates: dict[str, Any] | list[dict[str, Any]],
                    headers: dict[str, str] | None = None) -> tuple[int, str]:
        body = updates if isinstance(updates, dict) else {"danhSach": updates}
        try:
            async with httpx.AsyncClient(timeout=10.0) as http:
                response = await http.post(
                    url, json=body, headers={**self.push_headers, **(headers or {})}
                )
            result = (response.status_code, response.text)
        except httpx.HTTPError as exc:
            result = (0, f"{type(exc).__name__}: {exc}")
        self._record_push(url, body, *result)
        return result

    def _record_push(self, url: str, body: Any, status: int, text: str) -> None:
        with self.state.lock:
            self.state.pushes.append({"url": url, "body": body, "status": status,
                                      "answer": text[:500]})

    # ------------------------------------------------------------------ the system

    def _app(self, submit_path: str) -> FastAPI:
        app = FastAPI(title="Provincial one-stop system simulator")
        state = self.state

        @app.post(submit_path)
        async def receive(request: Request) -> Response:
            failure = await self.faults.apply()
            if failure:
                return PlainTextResponse("Service Unavailable", status_code=failure)
            if self.api_key is not None and request.headers.get("X-API-Key") != self.api_key:
                return answer(UNAUTHORIZED, "Khóa truy cập không hợp lệ", 401)
            with state.lock:
                rejection = state.rejections.pop(0) if state.rejections else None
            if rejection is not None:
                extra = {"truong": rejection.field} if rejection.field else {}
                return answer(INVALID, rejection.message, rejection.status, **extra)
            try:
                doc = json.loads(await request.body())
                self.contract.validate("dossier", doc)
            except ValueError:
                return answer(INVALID, "Dữ liệu gửi lên không phải JSON", 400)
            except ValidationError as exc:
                return answer(INVALID, f"Trường {exc.field}: {exc.message}", 400,
                              truong=exc.field or "")
            code = doc["maHoSo"]
            with state.lock:
                repeat = code in state.dossiers
                state.dossiers[code] = doc
                state.deliveries.append({"maHoSo": code,
                                         "idempotency_key": request.headers.get("Idempotency-Key")})
            if self.auto_push_url and not repeat:
                self._auto_push(code)
            if repeat:
                return answer(OK, "Hồ sơ đã được tiếp nhận trước đó", maHoSo=code)
            return answer(OK, "Tiếp nhận hồ sơ thành công", 201, maHoSo=code)

        @app.get(submit_path)
        async def list_dossiers() -> dict[str, Any]:
            with state.lock:
                return {"maLoi": OK, "danhSach": list(state.dossiers.values())}

        @app.get(submit_path + "/{code}")
        async def one_dossier(code: str) -> Response:
            found = self.dossier(code)
            if found is None:
                return answer(NOT_FOUND, f"Không tìm thấy hồ sơ {code}", 404)
            return JSONResponse({"maLoi": OK, "hoSo": found})

        @app.post("/_sim/push")
        async def push(request: Request) -> dict[str, Any]:
            doc = await request.json()
            status, text = await self.apush(doc["url"], doc["updates"], doc.get("headers"))
            return {"status": status, "answer": text}

        @app.get("/_sim/pushes")
        async def pushes() -> dict[str, Any]:
            return {"pushes": self.pushes}

        @app.post("/_sim/reject")
        async def reject(request: Request) -> dict[str, Any]:
            doc = await request.json()
            count = int(doc.get("count", 1))
            self.reject_next(doc.get("thongBao", "Dữ liệu không hợp lệ"), doc.get("truong"),
                             status=int(doc.get("status", 422)), count=count)
            return {"queued": count}

        @app.post("/_sim/auto-push")
        async def auto_push(request: Request) -> dict[str, Any]:
            doc = await request.json()
            self.auto_push_url = doc.get("url") or None
            self.push_headers = dict(doc.get("headers") or {})
            return {"auto_push_url": self.auto_push_url}

        self.add_fault_routes(app)

        return app

    def _auto_push(self, code: str) -> None:
        # A desk officer receives the dossier: the province reports "received" to the hub.
        assert self.auto_push_url is not None
        update = status_update(code, "DA_TIEP_NHAN", previous="CHO_TIEP_NHAN",
                               officer="Cán bộ một cửa", note="Tiếp nhận hồ sơ")
        task = asyncio.get_running_loop().create_task(self.apush(self.auto_push_url, update))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Provincial one-stop system simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--push-url", default=None,
                        help="push a 'received' status here for every new dossier")
    args = parser.parse_args(argv)
    sim = ProvincialSimulator(api_key=args.api_key, auto_push_url=args.push_url,
                              host=args.host, port=args.port)
    print(f"provincial simulator listening on {sim.start()} (switches under /_sim/)", flush=True)
    serve_until_interrupted(sim)


if __name__ == "__main__":
    main()
