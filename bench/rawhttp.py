"""A lean HTTP/1.1 client for the benchmarks' load generators: keep-alive connections over
asyncio streams, each request written as one preformatted buffer, the answer read by its
Content-Length (or chunks). httpx's CPU per request (its pool, header models, hooks) made the
generators, not the hub, the bottleneck of bench/intake.py and bench/e2e.py; this spends a
small fraction of it (docs/performance.md#lean-load-generator). It speaks only what the hub
answers: no TLS, no redirects, no compression.

    client = RawClient("http://127.0.0.1:8000", connections=32)
    answer = await client.post("/v1/dossiers", body, {"Content-Type": "application/json"})
    await client.aclose()

A connection the server closed, or one that fails while a request is out, raises
``TransportError`` (the request may or may not have been taken: resend it only when it is
idempotent, as the hub's signed requests with an Idempotency-Key are).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


class TransportError(Exception):
    """The connection failed or closed before a whole answer was read."""


@dataclass
class Answer:
    status_code: int
    headers: dict[str, str]  # names in lower case
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class RawClient:
    def __init__(self, base_url: str, connections: int, timeout: float = 60.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"base_url {base_url!r}: give http://host:port")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.timeout = timeout
        self._host_header = f"Host: {parts.netloc}\r\n".encode("latin-1")
        self._idle: list[_Connection] = []
        self._open: set[asyncio.StreamWriter] = set()
        self._slots = asyncio.Semaphore(connections)

    def format(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        """The request's bytes, to send with ``send`` (made once, beforehand, by a generator
        that sends many)."""
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        return (f"{method} {path} HTTP/1.1\r\n".encode("latin-1") + self._host_header
                + head.encode("latin-1") + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        return await self.send(self.format("POST", path, body, headers))

    async def send(self, request: bytes) -> Answer:
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._connect()
            try:
                answer, keep = await asyncio.wait_for(self._exchange(conn, request),
                                                      self.timeout)
            except (OSError, TimeoutError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError, ValueError) as exc:
                self._close(conn)
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
            if keep:
                self._idle.append(conn)
            else:
                self._close(conn)
            return answer

    async def _connect(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise TransportError(f"connect: {exc}") from exc
        self._open.add(writer)
        return reader, writer

    async def _exchange(self, conn: _Connection, request: bytes) -> tuple[Answer, bool]:
        reader, writer = conn
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            content = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            content = await _chunks(reader)
        elif status in (204, 304) or status < 200:
            content = b""
        else:  # the body runs to the connection's end
            content = await reader.read()
            return Answer(status, headers, content), False
        keep = headers.get("connection", "").lower() != "close"
        return Answer(status, headers, content), keep

    def _close(self, conn: _Connection) -> None:
        writer = conn[1]
        self._open.discard(writer)
        writer.close()

    async def aclose(self) -> None:
        self._idle.clear()
        writers, self._open = self._open, set()
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            await _trailers(reader)
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _trailers(reader: asyncio.StreamReader) -> None:
    while (await reader.readuntil(b"\r\n")) != b"\r\n":
        pass
