"""Many calls in flight to one system over aiohttp's connection pool, behind httpx's API.

httpx's own transport (httpcore over anyio) cost a draining worker about 1.7 ms of CPU per
portal call at 256 calls in flight, even spread over small pools (``hub.transport.pools``);
aiohttp's pool and C parser under the same ``httpx.AsyncClient`` (the httpx-aiohttp package)
about 0.5 ms (docs/performance.md#the-portals-calls-over-aiohttp). ``HttpTransport`` and the
translation of failures stay as they are: this is only the transport under them.

``AiohttpPool.exchange`` goes one step further for the plain calls ``HttpTransport`` makes (a
JSON body, no query, no httpx auth): the request straight to aiohttp's session, without the
httpx request and response built around it, which cost more than aiohttp's own work
(docs/performance.md#portal-calls-straight-to-aiohttp). Its failures are the same httpx
exceptions as through httpx, so they are translated alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import map_aiohttp_exceptions
from multidict import CIMultiDict


@contextlib.contextmanager
def _as_httpx(request: httpx.Request | None = None) -> Iterator[None]:
    """aiohttp's failures as httpx's own transport raises them."""
    try:
        with map_aiohttp_exceptions():
            yield
    except httpx.TimeoutException as exc:
        # httpx-aiohttp names every lost or refused connection a connect timeout; only
        # aiohttp's timeouts (TimeoutError) are: the rest is a system that cannot be reached,
        # as httpx's own transport says.
        if isinstance(exc.__cause__, TimeoutError):
            raise
        raise httpx.ConnectError(str(exc) or type(exc.__cause__).__name__,
                                 request=request) from exc.__cause__


class AiohttpPool(AiohttpTransport):
    """One aiohttp connection pool of ``in_flight`` connections (its look-up of a free
    connection does not grow with the calls in flight, so one pool does)."""

    @classmethod
    def for_calls(cls, in_flight: int) -> AiohttpPool:
        size = max(1, in_flight)
        # trust_env as httpx's own transport has it: SSL_CERT_FILE and SSL_CERT_DIR are read.
        return cls(limits=httpx.Limits(max_connections=size, max_keepalive_connections=size))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _as_httpx(request):
            return await super().handle_async_request(request)

    async def exchange(self, method: str, url: str, *, headers: Mapping[str, str],
                       content: bytes | None, timeout: float,
                       ) -> tuple[int, httpx.Headers, bytes]:
        """One request on this pool: the status, headers and (decoded) body of its answer.
        ``headers`` are sent as given (the httpx client's own included, as it would send
        them), except Accept-Encoding: aiohttp decodes the answer and says what it can."""
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        sent = CIMultiDict(headers)
        sent.popall("Accept-Encoding", None)
        # httpx.Timeout(timeout) as the transport above maps it.
        limits = aiohttp.ClientTimeout(sock_connect=timeout, sock_read=timeout, connect=timeout)
        with _as_httpx():
            async with self.client.request(method, url, headers=sent, data=content,
                                           allow_redirects=False, compress=False,
                                           timeout=limits) as response:
                body = await response.read()
                return response.status, httpx.Headers(response.raw_headers), body
