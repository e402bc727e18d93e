"""The portal's transport over aiohttp (hub.transport.aio) against real sockets: an answer is
read as with httpx's own transport, and each failure is translated the same way (a system
that cannot be reached is unavailable, one that does not answer timed out)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest

from hub.errors import RetryableError
from hub.simulation import free_port
from hub.transport.aio import AiohttpPool
from hub.transport.base import Request
from hub.transport.http import HttpTransport

Serve = Callable[[socket.socket], None]


@pytest.fixture
def server() -> Iterator[Callable[[Serve], str]]:
    """A TCP server of the test's own; each connection is given to the test's function."""
    listeners: list[socket.socket] = []
    stop = threading.Event()

    def start(serve: Serve) -> str:
        sock = socket.create_server(("127.0.0.1", 0))
        sock.settimeout(0.2)
        listeners.append(sock)

        def accept() -> None:
            while not stop.is_set():
                try:
                    conn, _ = sock.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield start
    stop.set()
    for sock in listeners:
        sock.close()


def _answer(conn: socket.socket) -> None:
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))
        while len(rest) < length:
            rest += conn.recv(65536)
        body = json.dumps({"echo": json.loads(rest)}).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def _hang_up(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.close()


def _never_answer(conn: socket.socket) -> None:
    conn.recv(65536)
    threading.Event().wait(5)
    conn.close()


def _send(url: str, timeout: float = 2.0) -> dict[str, object]:
    async def go() -> dict[str, object]:
        transport = HttpTransport("portal", "the portal", base_url=url, timeout=timeout,
                                  transport=AiohttpPool.for_calls(4))
        try:
            reply = await transport.send(Request("DongBoHoSoMC", "/x", body={"a": "Nguyễn"}))
            return reply.body
        finally:
            await transport.aclose()

    return asyncio.run(go())


def test_an_answer_is_read(server: Callable[[Serve], str]) -> None:
    assert _send(server(_answer)) == {"echo": {"a": "Nguyễn"}}


def test_a_refused_connection_is_unavailable() -> None:
    with pytest.raises(RetryableError) as caught:
        _send(f"http://127.0.0.1:{free_port()}")
    assert caught.value.code == "system.unavailable"
    assert "cannot be reached" in caught.value.message


def test_a_connection_closed_before_the_answer_is_unavailable(
        server: Callable[[Serve], str]) -> None:
    with pytest.raises(RetryableError) as caught:
        _send(server(_hang_up))
    assert caught.value.code == "system.unavailable"


def test_no_answer_in_time_is_a_timeout(server: Callable[[Serve], str]) -> None:
    with pytest.raises(RetryableError) as caught:
        _send(server(_never_answer), timeout=0.5)
    assert caught.value.code == "system.timeout"
    assert "within 0.5s" in caught.value.message


class _Counted(AiohttpPool):
    """Counts the requests that went through httpx's request and response."""

    through_httpx = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.through_httpx += 1
        return await super().handle_async_request(request)


def test_a_plain_call_goes_straight_to_aiohttp_as_httpx_would_send_it(
        server: Callable[[Serve], str]) -> None:
    """The direct path (AiohttpPool.exchange) sends the same request as httpx does over its
    own transport: the same body bytes, the same headers (the client's, the system's, the
    request's, case-insensitively, a request's own Accept over the client's); a call with a
    query still goes through httpx."""
    seen: list[tuple[dict[str, str], bytes]] = []

    def record(conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
            while len(rest) < int(headers["content-length"]):
                rest += conn.recv(65536)
            seen.append((headers, rest))
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")

    url = server(record)
    pool = _Counted(limits=httpx.Limits(max_connections=4, max_keepalive_connections=4))
    request = Request("DongBoHoSoMC", "/x", body={"a": "Nguyễn", "n": [1, 2.5, None]},
                      headers={"accept": "text/json", "X-Extra": "1"})

    async def go() -> None:
        for transport in (pool, httpx.AsyncHTTPTransport()):
            http = HttpTransport("portal", "the portal", base_url=url, timeout=30.0,
                                 headers={"dstcode": "G22"}, transport=transport)
            try:
                assert (await http.send(request)).body == {}
                if transport is pool:
                    assert pool.through_httpx == 0
                    await http.send(Request("TraCuuHoSo", "/x", body={}, params={"q": "1"}))
                    assert pool.through_httpx == 1
                    seen.pop()
            finally:
                await http.aclose()

    asyncio.run(go())
    (direct, direct_body), (plain, plain_body) = seen
    assert direct_body == plain_body == json.dumps(
        {"a": "Nguyễn", "n": [1, 2.5, None]}, ensure_ascii=False, separators=(",", ":")).encode()
    assert direct == plain
    assert direct["accept"] == "text/json" and direct["dstcode"] == "G22"
