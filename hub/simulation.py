"""A base for the simulators of external systems: an ASGI app served by uvicorn on a real
socket in a background thread, with switches for failures that every system shares.

Each adapter's simulator builds its FastAPI app on top of this and adds its own switches
(wrong checksum, expired session, duplicate callback...). ``pause()`` closes the listening
socket so callers see a real "connection refused" (a system that is down), and ``resume()``
listens again on the same port.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import uvicorn
from fastapi import FastAPI
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

Switches = dict[str, Callable[[Any], Any]]
Endpoint = Callable[[Request], Awaitable[Response]]


class PlainRoutes:
    """An ASGI app that answers some POST paths itself, without ``app``'s middleware and
    routing, and hands everything else (lifespan, the ``/_sim/`` switches) to ``app``: for a
    simulator's hot endpoints, whose FastAPI layers cost more CPU than the answers (in the
    NPSP simulator, 80 % of its samples against 19 % in its own handler; a benchmark's
    simulator shares the machine with the hub it measures, see docs/performance.md)."""

    def __init__(self, app: ASGIApp, routes: dict[str, Endpoint]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.routes.get(scope["path"])
            if endpoint is not None:
                response = await endpoint(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


@dataclass
class Faults:
    """Switches read by the simulator on every request."""

    slow_seconds: float = 0.0  # answer this much later (a slow system)
    fail_next: int = 0  # the next N requests get ``fail_status``
    fail_status: int = 503
    hang: bool = False  # never answer (the caller's timeout must fire)

    async def apply(self) -> int | None:
        """Call at the start of each request; returns a status to fail with, or None."""
        if self.hang:
            await asyncio.sleep(3600)
        if self.slow_seconds:
            await asyncio.sleep(self.slow_seconds)
        if self.fail_next > 0:
            self.fail_next -= 1
            return self.fail_status
        return None

    def update(self, values: dict[str, Any]) -> None:
        """Set the switches named in ``values`` (by field name), converting each value."""
        for key in ("slow_seconds", "fail_next", "fail_status", "hang"):
            if key in values:
                setattr(self, key, type(getattr(self, key))(values[key]))

    def reset(self) -> None:
        self.slow_seconds = 0.0
        self.fail_next = 0
        self.fail_status = 503
        self.hang = False


def _outgoing_ports() -> tuple[int, int]:
    """The range the system gives outgoing connections their local port from."""
    try:
        low, high = (int(n) for n in
                     Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int = 1, host: str = "127.0.0.1") -> int:
    """The first of ``count`` consecutive ports free now on ``host``, for a server that binds
    them later (another process's). Picked below the range of outgoing connections' local ports:
    a port the system hands out (``bind(("", 0))``) can become a connection's local port (to
    the broker, the database) before that server binds it, and the server then fails with
    "address already in use"."""
    low, _ = _outgoing_ports()
    floor = 10_000
    if low - floor > count:
        for _ in range(200):
            first = random.randrange(floor, low - count)
            if all(_bindable(host, port) for port in range(first, first + count)):
                return first
    for _ in range(200):  # no room below that range: the system's pick, and hope
        with socket.socket() as s:
            s.bind((host, 0))
            first = int(s.getsockname()[1])
        if all(_bindable(host, port) for port in range(first, first + count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports on {host}")


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now on ``host``, for a server that binds it later (see ``free_ports``)."""
    return free_ports(1, host)


def _hold(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and not listening: the port stays this process's (the
    system gives it to no connection, nor to another bind), and a connection to it is refused,
    as by a system that is down. Bound without SO_REUSEADDR where it can be, so that not even a
    server that sets it (uvicorn does) can share the port; with it when connections a server
    stopped a moment ago accepted on the port linger (open still, or in TIME_WAIT)."""
    try:
        return _bound(host, port, reuse=False)
    except OSError:
        return _bound(host, port, reuse=True)


def _bound(host: str, port: int, *, reuse: bool) -> socket.socket:
    s = socket.socket()
    try:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
    except OSError:
        s.close()
        raise
    return s


class SimulatorServer:
    """Serve ``app`` on 127.0.0.1 in a daemon thread. Usable as a context manager."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        lifespan: Literal["on", "off", "auto"] = "off",
    ) -> None:
        self.app = app
        self.lifespan = lifespan  # "on" for an app with start-up work (the hub's own API)
        self.host = host
        # The port is held from here on (bound, not listening), so that nothing else takes
        # it between now and start(), nor while the server is paused.
        self._held: socket.socket | None = _hold(host, port)
        self.port = int(self._held.getsockname()[1])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning", lifespan=self.lifespan,
            access_log=False,
        )
        server = uvicorn.Server(config)
        held, self._held = self._held or _hold(self.host, self.port), None
        # uvicorn listens on the held socket, and closes it when it shuts down. The connections
        # it accepts take SO_REUSEADDR from it: without it, one still open after a pause would
        # keep the port from being held again, or listened on.
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [held]},
                                  name=f"simulator:{self.port}", daemon=True)
        thread.start()
        # Wait on the server's own readiness flag, with a deadline, rather than a fixed sleep.
        for _ in range(500):
            if server.started:
                break
            if not thread.is_alive():
                raise RuntimeError(f"simulator could not listen on {self.host}:{self.port}")
            threading.Event().wait(0.01)
        else:
            raise RuntimeError(f"simulator on port {self.port} did not start within 5s")
        self._server, self._thread = server, thread
        return self.base_url

    def _shut_down(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            # A hung request (the ``hang`` switch) must not hold a simulator's shutdown up; an
            # app with a lifespan (the hub) is let finish its shutdown work cleanly.
            self._server.force_exit = self.lifespan == "off"
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def pause(self) -> None:
        """A system that is down: stop listening, keep the port (connections are refused)."""
        self._shut_down()
        if self._held is None:
            self._held = _hold(self.host, self.port)

    def stop(self) -> None:
        """Stop listening and give the port up."""
        self._shut_down()
        if self._held is not None:
            self._held.close()
            self._held = None

    def resume(self) -> str:
        return self.start()

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SimulatedSystem:
    """The lifecycle every simulator shares, over a ``SimulatorServer``: ``start()`` (listening
    unless built ``start_down``), ``stop()``, ``pause()`` (down: connection refused) and
    ``resume()``, the ``faults`` switches, and a count of the requests being answered so that a
    reset can wait for a slow one whose caller gave up.

    A subclass sets its own state first, then calls ``super().__init__(self._app(), ...)``: the
    app's routes read that state.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        start_down: bool = False,
    ) -> None:
        self.faults = faults or Faults()
        self.start_down = start_down
        self.in_flight = 0
        self._listening = False
        self.server = SimulatorServer(app, host, port)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def listening(self) -> bool:
        """Started and not paused."""
        return self._listening

    def start(self) -> str:
        if not self.start_down:
            self.resume()
        return self.base_url

    def stop(self) -> None:
        self.server.stop()
        self._listening = False

    def pause(self) -> None:
        """Down: close the listening socket, callers get connection refused until resume()."""
        if self._listening:
            self.server.pause()
            self._listening = False

    def resume(self) -> str:
        if not self._listening:
            self.server.resume()
            self._listening = True
        return self.base_url

    def outage(self, seconds: float) -> None:
        """Refuse connections for ``seconds``, then listen again by itself (for demos)."""

        def run() -> None:
            self.pause()
            threading.Event().wait(seconds)
            self.resume()

        threading.Timer(0.1, run).start()

    def add_fault_routes(self, app: Any, prefix: str = "/_sim") -> None:
        """``POST <prefix>/faults`` sets fault switches (a JSON object of ``Faults`` fields);
        ``POST <prefix>/down`` with ``{"seconds": n}`` takes the system down for a while."""

        async def faults(request: Request) -> dict[str, Any]:
            self.faults.update(await request.json())
            return {"faults": vars(self.faults)}

        async def down(request: Request) -> dict[str, Any]:
            seconds = float((await request.json()).get("seconds", 30))
            self.outage(seconds)
            return {"down_for": seconds}

        app.add_api_route(f"{prefix}/faults", faults, methods=["POST"])
        app.add_api_route(f"{prefix}/down", down, methods=["POST"])

    def drain(self, timeout: float = 5.0) -> None:
        """Wait, with a deadline, until no request is being answered."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            threading.Event().wait(0.01)

    def new_app(self, title: str) -> FastAPI:
        """The simulator's app, without documentation routes, its requests counted."""
        app = FastAPI(title=title, docs_url=None, redoc_url=None)
        self.count_requests(app)
        return app

    def count_requests(self, app: Any) -> None:
        """Keep ``in_flight`` up to date for ``app`` (a FastAPI or Starlette app)."""

        async def count(request: Request, call_next: RequestResponseEndpoint) -> Response:
            self.in_flight += 1
            try:
                return await call_next(request)
            finally:
                self.in_flight -= 1

        app.add_middleware(BaseHTTPMiddleware, dispatch=count)

    async def faulted(self) -> Response | None:
        """Apply the fault switches to a request: the failure to answer with, or None."""
        status = await self.faults.apply()
        if status is not None:
            return JSONResponse({"error": "simulated failure"}, status_code=status)
        return None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def command_line(title: str, port: int, argv: list[str] | None,
                 **options: dict[str, Any]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """A simulator's command line, parsed: ``--port`` (``port`` by default) and its
    ``options``, each a keyword (``callback_url`` for ``--callback-url``) with the settings of
    its ``add_argument``."""
    parser = argparse.ArgumentParser(description=f"{title} simulator")
    parser.add_argument("--port", type=int, default=port)
    for name, settings in options.items():
        parser.add_argument(f"--{name.replace('_', '-')}", **settings)
    return parser, parser.parse_args(argv)


def one_of(*choices: str) -> Callable[[Any], str]:
    """The reading of a switch that takes one of ``choices``."""

    def read(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {choices}")
        return str(value)

    return read


def serve_until_interrupted(sim: Any, title: str | None = None) -> None:
    """Block a command-line simulator until Ctrl-C, then stop it; given its ``title``, start it
    and say where it listens."""
    if title is not None:
        print(f"{title} simulator on {sim.start()} (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


class SwitchedSystem(SimulatedSystem):
    """A simulator whose switches are read and set by name, from Python or over HTTP
    (``GET /sim/state``, ``POST /sim/switches``): the shared ``slow``, ``fail`` and
    ``fail_status``, plus the system's own (``own_switches`` / ``set_switch``). ``down()`` and
    ``up()`` take it off and back on the network."""

    def __init__(self, app: Any, *, port: int = 0, slow: float = 0.0, fail: int = 0,
                 fail_status: int = 503, down: bool = False) -> None:
        # The shared switches as keyword arguments, as a test or a command line sets them.
        super().__init__(app, port=port, start_down=down, faults=Faults(
            slow_seconds=slow, fail_next=fail, fail_status=fail_status))

    def down(self) -> None:
        """Close the listening socket: callers get connection refused."""
        self.pause()

    def up(self) -> None:
        self.resume()

    def reset(self, drain_timeout: float = 5.0) -> None:
        """Every switch back to normal and the simulator listening; what it holds is kept.
        Waits for requests still being answered (a slow one whose caller gave up), so that
        they do not consume switches set after the reset."""
        self.faults.reset()
        self.drain(drain_timeout)
        self.reset_switches()
        self.up()

    def reset_switches(self) -> None:
        """The system's own switches and records back to normal."""

    # The system's own switches, attributes of the simulator: each name with the reading of a
    # value set over HTTP or from Python (a ValueError or TypeError refuses the value).
    own: ClassVar[Switches] = {}

    def own_switches(self) -> dict[str, Any]:
        values = {key: getattr(self, key) for key in self.own}
        return {k: sorted(v) if isinstance(v, set) else v for k, v in values.items()}

    def set_switch(self, key: str, value: Any) -> bool:
        """Set one of the system's own switches; False when ``key`` is not one of them or the
        value does not fit."""
        read = self.own.get(key)
        if read is None:
            return False
        try:
            setattr(self, key, read(value))
        except (TypeError, ValueError):
            return False
        return True

    def state(self) -> dict[str, Any]:
        """What ``GET /sim/state`` shows besides the switches."""
        return {}

    def switches(self) -> dict[str, Any]:
        return {
            "slow": self.faults.slow_seconds,
            "fail": self.faults.fail_next,
            "fail_status": self.faults.fail_status,
            **self.own_switches(),
        }

    def set_switches(self, **values: Any) -> None:
        for key, value in values.items():
            if key == "slow":
                self.faults.slow_seconds = float(value)
            elif key == "fail":
                self.faults.fail_next = int(value)
            elif key == "fail_status":
                self.faults.fail_status = int(value)
            elif not self.set_switch(key, value):
                raise ValueError(f"unknown switch or bad value: {key}={value!r}")

    def json_route(self, app: Any, path: str, answer: Callable[[dict[str, Any], Request], Any],
                   kept: list[dict[str, Any]]) -> None:
        """``POST path`` taking a JSON object, appended to ``kept`` and answered (JSON) by
        ``answer``, unless a fault answers first. The body is read before the faults apply: a
        slow system still acts on the request when its caller has given up waiting (the
        answer is lost, not the request)."""
        async def route(request: Request) -> Response:
            try:
                doc = await request.json()
            except ValueError:
                doc = None
            if (failed := await self.faulted()) is not None:
                return failed
            if not isinstance(doc, dict):
                return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
            kept.append(doc)
            return JSONResponse(answer(doc, request))

        app.add_api_route(path, route, methods=["POST"])

    def add_switch_routes(self, app: Any, prefix: str = "/sim") -> None:
        async def state() -> dict[str, Any]:
            return {"switches": self.switches(), **self.state()}

        async def switches(request: Request) -> dict[str, Any]:
            try:
                doc = await request.json()
            except ValueError:
                doc = None
            self.set_switches(**(doc if isinstance(doc, dict) else {}))
            return self.switches()

        app.add_api_route(f"{prefix}/state", state, methods=["GET"])
        app.add_api_route(f"{prefix}/switches", switches, methods=["POST"])
