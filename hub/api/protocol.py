"""The HTTP/1.1 connection protocol ``lienthong serve`` runs: uvicorn's httptools protocol (the
C parser, llhttp) with the limits a request's header phase needs, which neither has.

uvicorn bounds neither the time a client takes to send its headers (a fresh connection that
sends nothing, or one header byte a second, is kept for ever: the keep-alive timer only runs
between requests) nor their size (llhttp buffers a 1 MB header, or 10,000 of them, and hands
them to the app). Here:

- ``header_timeout``: from the connection's start (or a further request's first byte) to the
  end of its headers. A client that sent part of a request gets 408
  ``client.request_timeout``; a connection that sent nothing is closed.
- ``max_header_bytes`` (request target, header names and values) and ``max_headers``: beyond
  either, 431 ``client.headers_too_large``, without reading further.
- a body still arriving ``request_timeout`` after the headers, when the app has already
  answered (a refusal that did not read the body): the connection is closed. While the app
  has not answered, the app's own deadline answers 408 (``hub.api.limits``, the SOAP route).
- a body that completes after such an early answer: the keep-alive timer is armed again
  (uvicorn arms it once, when the answer is sent, and a body byte arriving disarms it).

- bytes that are not HTTP/1.1 (llhttp's parse error): 400 ``client.malformed_request``,
  problem JSON as every other refusal (uvicorn answers plain text).

Refusals made here are problem JSON (the request may not even have a path yet) and always
close the connection: what the client sends next cannot be told apart from the rest of the
refused request. Each is counted and logged as the app's refusals are, under the door
``connection`` (``hub.api.metrics.Metrics.connection_refused``, which the app offers as
``app.state.connection_refused``); a connection closed with no one to answer (nothing sent
within ``header_timeout``, a body trickling after an early answer) is logged and counted by
reason (``app.state.connection_closed``). Counting costs a few additions per header field;
the timers are armed only for a request whose headers or body span several reads
(docs/performance.md#connection-limits).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from hub.api.errors import HeadersTooLarge, MalformedRequest, SlowRequest
from hub.api.problems import PROBLEM_JSON, problem_body
from hub.errors import HubError

log = logging.getLogger(__name__)
# After a refusal the server stops sending (FIN) but reads and drops what the client still sends
# for up to this long before closing. Closing at once with unread bytes in the socket makes the
# kernel answer with a reset, which can destroy the refusal before the client has read it (a
# client still sending its 1 MB header is the usual case).
LINGER_S = 2.0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    max_header_bytes: int = 32_768
    max_headers: int = 100
    # After an early answer, how long the rest of a request's body may take.
    body_timeout: float = 10.0


class HubConfig(uvicorn.Config):
    """uvicorn's configuration with the hub's protocol and its limits (a Config is pickled to
    each worker process, and the protocol reads the limits from it)."""

    def __init__(self, app: Any, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, http=LimitedHttpToolsProtocol, **kwargs)
        self.connection_limits = limits


class _Refused(Exception):
    """Stops the parser inside a callback: the refusal is already written."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, config: uvicorn.Config, server_state: ServerState,
                 app_state: dict[str, Any], _loop: asyncio.AbstractEventLoop | None = None
                 ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = getattr(config, "connection_limits", None)
        self.limits = limits if isinstance(limits, ConnectionLimits) else ConnectionLimits()
        # Between a request's first byte and the end of its headers; between the end of its
        # headers and the end of its body.
        self._in_head = False
        self._in_body = False
        # Two lower bounds of the head's size so far: what the parser handed over (target
        # fragments, whole fields), and the reads that held nothing but head bytes (a field
        # still being received is counted by the second only).
        self._head_parsed = 0
        self._head_read = 0
        self._fields = 0
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None

    # -- connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Until the first request's headers are in: an idle new connection is cut too.
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a refusal: dropped
        head_before = self._in_head
        # uvicorn's own, but a limit's refusal (raised in a callback) is not a parse error.
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not self._refused:
                # llhttp's reason is one of its fixed phrases, never the bytes it read.
                self._refuse(MalformedRequest(
                    f"the request is not valid HTTP/1.1 ({str(exc)[:80]}); send a request "
                    "line, header fields and a body as RFC 9112 says", field="request"))
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self.transport.is_closing():
            return
        if self._in_head:
            if head_before:
                self._head_read += len(data)
                if self._head_read > self.limits.max_header_bytes:
                    self._refuse(self._too_large())
                    return
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.limits.header_timeout,
                                                        self._head_late)
        elif self._in_body and self._body_timer is None:
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_late)

    # -- parser callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_parsed = self._head_read = self._fields = 0

    def on_url(self, url: bytes) -> None:
        self._head_parsed += len(url)
        if self._head_parsed > self.limits.max_header_bytes:
            self._refuse(self._too_large())
            raise _Refused
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        self._head_parsed += len(name) + len(value) + 4  # ": " and CRLF
        if self._fields > self.limits.max_headers:
            self._refuse(HeadersTooLarge(
                f"the request has more than {self.limits.max_headers} header fields; the hub "
                "accepts at most that many (Settings.max_headers): send only the headers the "
                "API names", field="headers"))
            raise _Refused
        if self._head_parsed > self.limits.max_header_bytes:
            self._refuse(self._too_large())
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._in_body = True
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()
        cycle = self.cycle
        if (cycle is not None and cycle.response_complete and not self.pipeline
                and self.timeout_keep_alive_task is None and not self.transport.is_closing()):
            # Answered before the body was all in: uvicorn armed its keep-alive timer then,
            # and the body's bytes disarmed it. The connection is idle from now on.
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler)

    # -- limits --------------------------------------------------------------------------

    def _too_large(self) -> HeadersTooLarge:
        return HeadersTooLarge(
            f"the request's headers are larger than {self.limits.max_header_bytes} bytes; the "
            "hub accepts at most that much (Settings.max_header_bytes): send large values in "
            "the body", field="headers")

    def _head_late(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if not self._in_head:
            # Nothing of a request came: no one to answer. Counted all the same: many of these
            # are a client holding connections open (a slowloris without a byte), the kind of
            # flood an operator must be able to see.
            log.info("closing the connection of %s: no request arrived within %g s "
                     "(Settings.header_timeout)", _peer(self.client), self.limits.header_timeout)
            self._count_closed("header_timeout")
            self.transport.close()
            return
        self._refuse(SlowRequest(
            f"the request's headers did not arrive within {self.limits.header_timeout:g} s "
            "(Settings.header_timeout); send the request line and headers at once",
            field="headers"))

    def _body_late(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if not self._in_body or cycle is None or self.transport.is_closing():
            return
        if cycle.response_complete:
            log.info("closing the connection of %s: the rest of a request answered early did "
                     "not arrive within %g s", _peer(self.client), self.limits.body_timeout)
            self._count_closed("body_timeout")
            self.transport.close()
        else:
            # The app answers (its own deadline); the connection closes after that answer.
            cycle.keep_alive = False

    def _refuse(self, error: HubError) -> None:
        self._refused = True
        self._cancel_timers()
        count = _offered(self.app, "connection_refused")
        if count is not None:
            count(error, self.client[0] if self.client else None)
        else:
            log.warning("refused a request from %s at the HTTP layer: %s (%s)",
                        _peer(self.client), error.code, error.message)
        cycle = self.cycle
        if self._in_body or (cycle is not None and not cycle.response_complete):
            # Within a request's body, or while another request's answer is under way on this
            # connection (pipelining): a refusal written now would corrupt that answer or be
            # taken for it.
            self.transport.close()
            return
        body = json.dumps(problem_body(error)).encode()
        head = [STATUS_LINE[error.http_status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: ", PROBLEM_JSON.encode(), b"\r\n",
                 b"content-length: ", str(len(body)).encode(), b"\r\n",
                 b"connection: close\r\n\r\n", body]
        self.transport.write(b"".join(head))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.flow.resume_reading()
            self._linger = self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    def _count_closed(self, reason: str) -> None:
        count = _offered(self.app, "connection_closed")
        if count is not None:
            count(reason)

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer, self._linger):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = self._linger = None


def _offered(app: Any, name: str) -> Callable[..., None] | None:
    """What the app offers as ``app.state.<name>`` to count the protocol's refusals and
    closings, looked up through the middlewares uvicorn may wrap it in (each keeps the app it
    wraps as ``app``)."""
    for _ in range(8):
        state = getattr(app, "state", None)
        count = getattr(state, name, None)
        if callable(count):
            return count  # type: ignore[no-any-return]
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "an unknown peer"


__all__ = ["ConnectionLimits", "HubConfig", "LimitedHttpToolsProtocol"]
