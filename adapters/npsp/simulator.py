"""A simulator of the National Public Service Portal behind the data-sharing platform, speaking
its protocol on a real socket: login -> session; ``DongBoHoSoMC`` (an upsert store),
``CapNhatTienDoHoSoMC``, ``TraCuuHoSo``; replies with ``error_code``.

Switches: ``pause()``/``resume()`` (down: connection refused), ``faults`` (slow, hang, the next
N requests fail with a 5xx), ``expire_sessions()`` (every session expires now),
``reject_next(error_code, message)`` (the next calls are refused with that code),
``report_exists_next()`` (the next inserts answer "already exists"), ``fail_dossier(code, n)``
(the next n calls about one dossier fail as the portal's temporary error). The same switches
are reachable over HTTP under ``/_sim/`` for the demo.

What it saw, for tests and benchmarks: every call with its time and the statuses it carried
(``calls``), the most calls it was answering at once (``most_concurrent``), and the order of
each dossier's syncs: a sync that takes a dossier to a status code lower than the one it had
is counted in ``regressions`` (tests and the benchmark send each dossier's statuses in
increasing order, so every regression is an event applied out of order):

    python -m adapters.npsp.simulator --port 8102 --username hub --password secret
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from hub.contracts import Contract, load_contract
from hub.errors import ValidationError
from hub.settings import PROJECT_ROOT
from hub.simulation import PlainRoutes, SimulatedSystem, serve_until_interrupted

DSTCODE = "VN:GOV:000.00.00.G22:vpcpdvcprovider"
AUTH_PATH = "/api/dvcqg/login"
INTEGRATION_PATH = "/api/dvcqg/service"

# The portal's error codes as this simulator plays them (mappings/npsp/errors.toml says what
# the hub makes of each).
OK = 0
SYSTEM_ERROR = -1
SESSION_EXPIRED = -2
ALREADY_EXISTS = 1
INVALID = 2
NOT_FOUND = 3
BAD_LOGIN = 4
UNKNOWN_SERVICE = 6
MESSAGES = {
    OK: "Thành công",
    SYSTEM_ERROR: "Lỗi hệ thống, vui lòng thử lại sau",
    SESSION_EXPIRED: "Phiên làm việc không hợp lệ hoặc đã hết hạn",
    ALREADY_EXISTS: "Hồ sơ đã tồn tại trên Cổng DVC quốc gia",
    INVALID: "Dữ liệu không hợp lệ",
    NOT_FOUND: "Hồ sơ không tồn tại trên Cổng DVC quốc gia",
    BAD_LOGIN: "Tên đăng nhập hoặc mật khẩu không đúng",
    UNKNOWN_SERVICE: "Dịch vụ không tồn tại",
}


def reply(code: int, message: str | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message or MESSAGES.get(code, ""),
                         **extra})


@dataclass
class _Rejection:
    error_code: int
    message: str


@dataclass
class NpspState:
    """What the portal holds; guarded by ``lock`` (the server runs in its own thread)."""

    dossiers: dict[str, dict[str, Any]] = field(default_factory=dict)
    progress: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    sessions: dict[str, float] = field(default_factory=dict)  # token -> expiry (monotonic)
    logins: int = 0
    rejections: list[_Rejection] = field(default_factory=list)
    exists_next: int = 0
    failing: dict[str, int] = field(default_factory=dict)  # dossier -> calls still to fail
    active: int = 0  # service calls being answered now
    most_concurrent: int = 0
    regressions: list[tuple[str, int, int]] = field(default_factory=list)  # code, had, got
    lock: threading.Lock = field(default_factory=threading.Lock)


class NpspSimulator(SimulatedSystem):
    def __init__(
        self,
        *,
        username: str = "hub",
        password: str = "secret",
        dstcode: str | None = DSTCODE,
        session_ttl: float = 1800.0,
        auth_path: str = AUTH_PATH,
        integration_path: str = INTEGRATION_PATH,
        schemas_dir: Path = PROJECT_ROOT / "schemas" / "npsp",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.username, self.password = username, password
        self.dstcode = dstcode
        self.session_ttl = session_ttl
        self.state = NpspState()
        self.contract: Contract = load_contract(schemas_dir)
        super().__init__(self._app(auth_path, integration_path), host=host, port=port)

    # ------------------------------------------------------------------ lifecycle and switches

    def expire_sessions(self) -> None:
        with self.state.lock:
            self.state.sessions.clear()

    def reject_next(self, error_code: int, message: str | None = None, count: int = 1) -> None:
        """The next ``count`` calls (not logins) are answered with ``error_code``."""
        with self.state.lock:
            self.state.rejections.extend(
                [_Rejection(error_code, message or MESSAGES.get(error_code, "Lỗi"))] * count
            )

    def report_exists_next(self, count: int = 1) -> None:
        """The next ``count`` inserts answer "already exists", known dossier or not."""
        with self.state.lock:
            self.state.exists_next += count

    def fail_dossier(self, code: str, count: int = 1) -> None:
        """The next ``count`` calls about dossier ``code`` answer the portal's temporary error
        (``-1``, retried by the hub); other dossiers are not affected."""
        with self.state.lock:
            self.state.failing[code] = self.state.failing.get(code, 0) + count

    def reset(self) -> None:
        self.faults.reset()
        with self.state.lock:
            self.state.rejections.clear()
            self.state.exists_next = 0
            self.state.failing.clear()

    # ------------------------------------------------------------------ inspection

    def dossier(self, code: str) -> dict[str, Any] | None:
        with self.state.lock:
            found = self.state.dossiers.get(code)
            return dict(found) if found is not None else None

    def progress_of(self, code: str) -> list[dict[str, Any]]:
        with self.state.lock:
            return [dict(p) for p in self.state.progress if p.get("MaHoSo") == code]

    def calls(self, service: str | None = None) -> list[dict[str, Any]]:
        with self.state.lock:
            return [dict(c) for c in self.state.calls if service in (None, c["service"])]

    @property
    def logins(self) -> int:
        return self.state.logins

    @property
    def most_concurrent(self) -> int:
        """The most service calls this simulator was answering at one time."""
        return self.state.most_concurrent

    @property
    def regressions(self) -> list[tuple[str, int, int]]:
        """(dossier, status it had, lower status a later sync gave it), one per sync that
        moved a dossier backwards."""
        with self.state.lock:
            return list(self.state.regressions)

    # ------------------------------------------------------------------ the portal

    def _app(self, auth_path: str, integration_path: str) -> PlainRoutes:
        app = FastAPI(title="NPSP simulator")
        state = self.state

        async def guarded(request: Request, handle: Callable[[Any], Response]) -> Response:
            failure = await self.faults.apply()
            if failure:
                return PlainTextResponse("Service Unavailable", status_code=failure)
            if self.dstcode is not None and request.headers.get("dstcode") != self.dstcode:
                return JSONResponse(
                    {"error": f"dstcode header must be {self.dstcode!r}"}, status_code=403
                )
            try:
                body = json.loads(await request.body())
            except ValueError:
                return reply(INVALID, "Dữ liệu gửi lên không phải JSON")
            return handle(body)

        @app.post(auth_path)
        async def login(request: Request) -> Response:
            return await guarded(request, self._login)

        @app.post(integration_path)
        async def service(request: Request) -> Response:
            with state.lock:
                state.active += 1
                state.most_concurrent = max(state.most_concurrent, state.active)
            try:
                return await guarded(request, self._service)
            finally:
                with state.lock:
                    state.active -= 1

        @app.get("/_sim/dossiers")
        async def all_dossiers() -> dict[str, Any]:
            with state.lock:
                return {"dossiers": list(state.dossiers.values())}

        @app.get("/_sim/dossiers/{code}")
        async def one_dossier(code: str) -> Response:
            found = self.dossier(code)
            if found is None:
                return JSONResponse({"error": f"no dossier {code}"}, status_code=404)
            return JSONResponse({"dossier": found, "progress": self.progress_of(code)})

        @app.get("/_sim/calls")
        async def calls(since: int = 0) -> Response:
            # ``since``: the calls from that index on, for a benchmark that polls while
            # thousands of calls accumulate (the whole list each second cost the simulator
            # more CPU than answering the calls). Plain JSON: the records are JSON already.
            with state.lock:
                found = [dict(c) for c in state.calls[max(0, since):]]
                total = len(state.calls)
            return JSONResponse({"calls": found, "total": total, "logins": state.logins})

        @app.get("/_sim/order")
        async def order() -> dict[str, Any]:
            with state.lock:
                return {"most_concurrent": state.most_concurrent,
                        "regressions": [list(r) for r in state.regressions]}

        @app.post("/_sim/fail-dossier")
        async def fail_dossier(request: Request) -> dict[str, Any]:
            doc = await request.json()
            self.fail_dossier(str(doc["code"]), int(doc.get("count", 1)))
            return {"failing": str(doc["code"]), "count": int(doc.get("count", 1))}

        @app.post("/_sim/expire-sessions")
        async def expire() -> dict[str, Any]:
            self.expire_sessions()
            return {"expired": True}

        @app.post("/_sim/reject")
        async def reject(request: Request) -> dict[str, Any]:
            doc = await request.json()
            self.reject_next(int(doc["error_code"]), doc.get("message"), int(doc.get("count", 1)))
            return {"queued": int(doc.get("count", 1))}

        @app.post("/_sim/already-exists")
        async def exists(request: Request) -> dict[str, Any]:
            doc = await request.json()
            self.report_exists_next(int(doc.get("count", 1)))
            return {"queued": int(doc.get("count", 1))}

        self.add_fault_routes(app)

        # The portal's two endpoints (routes of the app too, for its OpenAPI) answered without
        # FastAPI's layers: a benchmark's thousands of calls a second share the machine.
        return PlainRoutes(app, {auth_path: login, integration_path: service})

    def _login(self, body: Any) -> Response:
        try:
            self.contract.validate("login.request", body)
        except ValidationError as exc:
            return reply(INVALID, f"{MESSAGES[INVALID]}: {exc.field} {exc.message}")
        if body["username"] != self.username or body["password"] != self.password:
            return reply(BAD_LOGIN)
        token = secrets.token_urlsafe(24)
        with self.state.lock:
            self.state.sessions[token] = time.monotonic() + self.session_ttl
            self.state.logins += 1
        return reply(OK, session=token)

    def _service(self, body: Any) -> Response:
        if not isinstance(body, dict):
            return reply(INVALID, "Dữ liệu gửi lên phải là một đối tượng JSON")
        state = self.state
        with state.lock:
            expiry = state.sessions.get(str(body.get("session")))
            if expiry is None or expiry < time.monotonic():
                state.sessions.pop(str(body.get("session")), None)
                return reply(SESSION_EXPIRED)
            name = body.get("service")
            state.calls.append({
                "service": name, "madonvi": body.get("madonvi"),
                "isUpdating": body.get("isUpdating"),
                "codes": [r.get("MaHoSo") for r in body.get("data") or [] if isinstance(r, dict)]
                or [body.get("mahoso")],
                # When and in which status each record arrived: what a benchmark needs to time
                # deliveries and to check one dossier's order.
                "statuses": [r.get("TrangThaiHoSo") for r in body.get("data") or []
                             if isinstance(r, dict)],
                "at": time.time(),
            })
            if state.rejections:
                rejection = state.rejections.pop(0)
                return reply(rejection.error_code, rejection.message)
            for code in state.calls[-1]["codes"]:
                if state.failing.get(code, 0) > 0:
                    state.failing[code] -= 1
                    return reply(SYSTEM_ERROR)
        handlers: dict[str, Callable[[dict[str, Any]], Response]] = {
            "DongBoHoSoMC": self._sync,
            "CapNhatTienDoHoSoMC": self._progress,
            "TraCuuHoSo": self._lookup,
        }
        handler = handlers.get(str(name))
        if handler is None:
            return reply(UNKNOWN_SERVICE, f"{MESSAGES[UNKNOWN_SERVICE]}: {name!r}")
        try:
            self.contract.validate(f"{name}.request", body)
        except ValidationError as exc:
            return reply(INVALID, f"{MESSAGES[INVALID]}: {exc.field} {exc.message}")
        return handler(body)

    def _sync(self, body: dict[str, Any]) -> Response:
        records: list[dict[str, Any]] = body["data"]
        state = self.state
        with state.lock:
            if body["isUpdating"] == "False":
                forced = state.exists_next > 0
                known = [r["MaHoSo"] for r in records if r["MaHoSo"] in state.dossiers]
                if forced or known:
                    state.exists_next -= 1 if forced else 0
                    codes = known or [r["MaHoSo"] for r in records]
                    return reply(ALREADY_EXISTS, f"{MESSAGES[ALREADY_EXISTS]}: {', '.join(codes)}")
            else:
                unknown = [r["MaHoSo"] for r in records if r["MaHoSo"] not in state.dossiers]
                if unknown:
                    return reply(NOT_FOUND, f"{MESSAGES[NOT_FOUND]}: {', '.join(unknown)}")
            for record in records:
                had = state.dossiers.get(record["MaHoSo"])
                if had is not None and _status(record) < _status(had):
                    state.regressions.append(
                        (record["MaHoSo"], _status(had), _status(record)))
                state.dossiers[record["MaHoSo"]] = dict(record)
        return reply(OK)

    def _progress(self, body: dict[str, Any]) -> Response:
        records: list[dict[str, Any]] = body["data"]
        with self.state.lock:
            unknown = [r["MaHoSo"] for r in records if r["MaHoSo"] not in self.state.dossiers]
            if unknown:
                return reply(NOT_FOUND, f"{MESSAGES[NOT_FOUND]}: {', '.join(unknown)}")
            self.state.progress.extend(dict(r) for r in records)
        return reply(OK)

    def _lookup(self, body: dict[str, Any]) -> Response:
        found = self.dossier(body["mahoso"])
        return reply(OK, result=[found] if found is not None else [])


def _status(record: dict[str, Any]) -> int:
    try:
        return int(record.get("TrangThaiHoSo") or 0)
    except (TypeError, ValueError):
        return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="NPSP simulator for demos and tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8102)
    parser.add_argument("--username", default="hub")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--dstcode", default=DSTCODE)
    parser.add_argument("--session-ttl", type=float, default=1800.0)
    args = parser.parse_args(argv)
    sim = NpspSimulator(username=args.username, password=args.password, dstcode=args.dstcode,
                        session_ttl=args.session_ttl, host=args.host, port=args.port)
    print(f"NPSP simulator listening on {sim.start()} (switches under /_sim/)", flush=True)
    serve_until_interrupted(sim)


if __name__ == "__main__":
    main()
