"""The simulators' server (hub.simulation.SimulatorServer) keeps its port from the moment it is
built until it is stopped, paused included: a port picked, let go and bound later can be taken
in between by another test's server or by a connection's local port ("address already in use",
seen in the demo's test). Ports for servers of other processes are picked below the range of
those local ports."""

from __future__ import annotations

import socket

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from hub.simulation import SimulatorServer, _outgoing_ports, free_ports


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("up")


def _app() -> Starlette:
    return Starlette(routes=[Route("/", _hello)])


def _taken(port: int) -> bool:
    """Whether an ordinary bind (no SO_REUSEADDR) of ``port`` fails."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=5)
    except httpx.ConnectError:
        return True
    return False


def test_the_port_is_held_from_construction_through_a_pause_until_stop() -> None:
    server = SimulatorServer(_app())
    try:
        assert _taken(server.port)  # before start
        assert _refused(server.base_url)
        server.start()
        assert httpx.get(server.base_url, timeout=5).text == "up"
        server.pause()
        assert _refused(server.base_url)  # down, as a system that is down
        assert _taken(server.port)  # and still ours
        server.resume()
        assert httpx.get(server.base_url, timeout=5).text == "up"
    finally:
        server.stop()
    assert not _taken(server.port)


def test_a_port_given_is_held_too_and_a_busy_one_is_named() -> None:
    port = free_ports()
    server = SimulatorServer(_app(), port=port)
    try:
        assert server.port == port and _taken(port)
        with pytest.raises(OSError):
            SimulatorServer(_app(), port=port)
    finally:
        server.stop()


def test_ports_for_other_processes_are_consecutive_free_and_below_outgoing_ones() -> None:
    low, _ = _outgoing_ports()
    for _ in range(20):
        first = free_ports(3)
        assert first + 3 <= low
        assert not any(_taken(port) for port in range(first, first + 3))
