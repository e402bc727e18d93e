"""A base for the simulators of external systems: an ASGI app served by uvicorn on a real
socket in a background thread, with switches for failures that every system shares.

Each adapter's simulator builds its FastAPI app on top of this and adds its own switches
(wrong checksum, expired session, duplicate callback...). ``pause()`` closes the listening
socket so callers see a real "connection refused" (a system that is down), and ``resume()``
listens again on the same port.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass
from typing import Any, Literal

import uvicorn


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

    def reset(self) -> None:
        self.slow_seconds = 0.0
        self.fail_next = 0
        self.fail_status = 503
        self.hang = False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


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
        self.port = port or free_port(host)
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
        thread = threading.Thread(target=server.run, name=f"simulator:{self.port}", daemon=True)
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

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            # A hung request (the ``hang`` switch) must not hold a simulator's shutdown up; an
            # app with a lifespan (the hub) is let finish its shutdown work cleanly.
            self._server.force_exit = self.lifespan == "off"
            self._thread.join(timeout=5)
        self._server = self._thread = None

    # A system that is down refuses connections: close the socket, keep the port.
    pause = stop

    def resume(self) -> str:
        return self.start()

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
