"""``lienthong serve``: run the REST entry point (and its outbox relay) under uvicorn.

With several workers each process builds its own app from the same settings (environment and
``LIENTHONG_CONFIG``): the per-client rate is divided among them, and Prometheus metrics are
shared through ``PROMETHEUS_MULTIPROC_DIR`` so ``/metrics`` reports all of them.

Connections are served by ``hub.api.protocol`` (uvicorn's httptools protocol with limits on the
header phase: ``Settings.header_timeout``, ``max_header_bytes``, ``max_headers``), idle
keep-alive connections closed after ``Settings.keep_alive_timeout``. Each process takes at most
``Settings.max_in_flight`` requests at once and refuses the excess with 503 ``server.busy`` and
Retry-After (``hub.api.limits.InFlightLimit``, in the app each worker builds; uvicorn's
``limit_concurrency`` stays unset: it counts idle keep-alive connections as load)."""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing.connection
import os
import pickle
import shutil
import socket
import sys
import tempfile
from typing import Annotated, Any

import typer
import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import multiprocess
from uvicorn.supervisors.multiprocess import Multiprocess

from hub.api.protocol import ConnectionLimits, HubConfig
from hub.settings import Settings

FACTORY = "hub.cli.serve:app_from_env"
# uvicorn's exit status when its server does not start (uvicorn.main.STARTUP_FAILURE).
STARTUP_FAILURE = 3


def app_from_env() -> FastAPI:
    """The app of one worker process, from the environment (uvicorn factory)."""
    from hub.api.app import create_app
    from hub.errors import ConfigError

    try:
        return create_app(Settings())
    except ConfigError as exc:
        # A worker's exit status 3 tells uvicorn's supervisor the app cannot start, so it stops
        # instead of starting the same broken worker again and again (any other status is
        # taken for a crash and restarted).
        print(f"lienthong serve: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(STARTUP_FAILURE) from None


class WatchedWorker(multiprocess.Process):
    """uvicorn's worker process, whose ping also ends when the process does. The supervisor
    waits up to Settings.worker_healthcheck_timeout for an answer, long enough for a worker to
    start on a loaded machine; without the process's own sentinel in the wait, a worker that
    died while being pinged would be replaced only when that wait ran out."""

    def _healthcheck(self, timeout: float) -> bool | None:
        try:
            self.parent_conn.send(b"ping")
            ready = multiprocessing.connection.wait(
                [self.parent_conn, self.process.sentinel], timeout)
            if self.parent_conn not in ready:
                return None
            started: bool = self.parent_conn.recv()
            return started
        except (OSError, EOFError, pickle.UnpicklingError):
            return None


# The supervisor makes its workers with this module's name (at start, on restarts, on TTIN).
multiprocess.Process = WatchedWorker  # type: ignore[misc]


class ReusePortWorkers(Multiprocess):
    """uvicorn's worker supervisor (health checks, restarts, signals), but every worker gets a
    listening socket of its own, bound with SO_REUSEPORT to the same address, instead of all
    sharing one. With one shared socket the workers race to accept: a burst of new connections
    (a client's pool opening) goes mostly to whichever worker is idle at that instant, and stays
    there for the connections' lives, one event loop saturated while the other waits. The
    kernel spreads SO_REUSEPORT connections by a hash of their addresses
    (docs/performance.md#worker-sockets).

    The parent binds each socket and hands it to the worker it starts; it keeps no copy, so a
    dead worker's socket leaves the group and gets no more connections. SO_REUSEPORT would also
    let a second ``lienthong serve`` on the same port join the group silently: the parent holds
    a guard (``ServeGuard``) that a second one cannot take."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._started: list[socket.socket] = []
        self._handed: list[socket.socket] = []
        self._guard = ServeGuard(config.host, config.port)
        # The first socket now, so that a taken port fails before any worker starts.
        self._started.append(reuse_port_socket(config.host, config.port))
        super().__init__(config, sockets=[])

    @property
    def sockets(self) -> list[socket.socket]:
        # Read once by the supervisor for each worker it starts.
        sock = self._started.pop() if self._started else reuse_port_socket(
            self.config.host, self.config.port)
        self._handed.append(sock)
        return [sock]

    @sockets.setter
    def sockets(self, _value: list[socket.socket]) -> None:
        pass  # the supervisor's own assignment: each worker gets a socket of its own instead

    def _release(self) -> None:
        # A started worker has its own copy of its socket (passed on at spawn).
        while self._handed:
            self._handed.pop().close()

    def run(self) -> None:
        try:
            super().run()
        finally:
            self._release()
            while self._started:
                self._started.pop().close()
            self._guard.close()

    def init_processes(self) -> None:
        try:
            super().init_processes()
        finally:
            self._release()

    def restart_all(self) -> None:
        try:
            super().restart_all()
        finally:
            self._release()

    def keep_subprocess_alive(self) -> None:
        try:
            super().keep_subprocess_alive()
        finally:
            self._release()

    def handle_ttin(self) -> None:
        try:
            super().handle_ttin()
        finally:
            self._release()


class ServeGuard:
    """An abstract Unix socket named for the address served (Linux: bound once per network
    namespace, released by the system when the process dies): the second ``lienthong serve``
    for the same address fails to bind it, as it would fail to bind the port without
    SO_REUSEPORT."""

    def __init__(self, host: str, port: int) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.bind(f"\0lienthong-serve:{host}:{port}")
        except OSError as exc:
            self._sock.close()
            raise typer.BadParameter(
                f"another lienthong serve already listens on {host}:{port} ({exc.strerror}); "
                "stop it or choose another --port", param_hint="--port") from exc

    def close(self) -> None:
        self._sock.close()


def reuse_port_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise typer.BadParameter(f"cannot listen on {host}:{port}: {exc.strerror}; choose "
                                 "another --port or stop what holds it",
                                 param_hint="--port") from exc
    sock.set_inheritable(True)
    return sock


def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on [settings.http_host]")]
    = None,
    port: Annotated[int | None, typer.Option(help="port [settings.http_port]")] = None,
    workers: Annotated[int, typer.Option(min=1, help="worker processes")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    access_log: Annotated[bool, typer.Option(help="log every request")] = False,
) -> None:
    """Serve the REST API (/v1/..., /openapi.json, /healthz, /readyz, /metrics)."""
    settings = Settings()
    if workers > 1:
        # Workers inherit the environment: each takes its share of the per-client rate.
        os.environ["LIENTHONG_RATE_PER_CLIENT"] = repr(settings.rate_per_client / workers)
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="lienthong-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    options: dict[str, Any] = dict(
        factory=True,
        host=host or settings.http_host,
        port=port or settings.http_port,
        workers=workers,
        log_level=log_level,
        access_log=access_log,
        # The C event loop when installed; the protocol (HubConfig) is httptools, the C parser.
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        timeout_keep_alive=settings.keep_alive_timeout,
        timeout_graceful_shutdown=10,
        timeout_worker_healthcheck=settings.worker_healthcheck_timeout,
        # The app must see the connection's true peer: it honours a client-certificate header
        # only from Settings.trusted_proxies (hub.api.auth.RequestPeer), and uvicorn's
        # X-Forwarded-For rewriting would put the terminator's client there instead.
        proxy_headers=False,
    )
    limits = ConnectionLimits(
        header_timeout=settings.header_timeout, max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers, body_timeout=settings.request_timeout)
    config = HubConfig(FACTORY, limits=limits, **options)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            # SO_REUSEPORT spreads connections over the sockets on Linux only (elsewhere the
            # last socket bound would take them all).
            if workers > 1:
                supervisor = (ReusePortWorkers(config) if sys.platform == "linux"
                              else Multiprocess(config, sockets=[config.bind_socket()]))
                supervisor.run()
                if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
                    sys.exit(STARTUP_FAILURE)
            else:
                server = uvicorn.Server(config)
                server.run()
                if not server.started:
                    sys.exit(STARTUP_FAILURE)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
