"""Many calls in flight to one system over aiohttp's connection pool, behind httpx's API.

httpx's own transport (httpcore over anyio) cost a draining worker about 1.7 ms of CPU per
portal call at 256 calls in flight, even spread over small pools (``hub.transport.pools``);
aiohttp's pool and C parser under the same ``httpx.AsyncClient`` (the httpx-aiohttp package)
about 0.5 ms (docs/performance.md#the-portals-calls-over-aiohttp). ``HttpTransport`` and the
translation of failures stay as they are: this is only the transport under them.
"""

from __future__ import annotations

import httpx
from httpx_aiohttp import AiohttpTransport


class AiohttpPool(AiohttpTransport):
    """One aiohttp connection pool of ``in_flight`` connections (its look-up of a free
    connection does not grow with the calls in flight, so one pool does)."""

    @classmethod
    def for_calls(cls, in_flight: int) -> AiohttpPool:
        size = max(1, in_flight)
        # trust_env as httpx's own transport has it: SSL_CERT_FILE and SSL_CERT_DIR are read.
        return cls(limits=httpx.Limits(max_connections=size, max_keepalive_connections=size))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.TimeoutException as exc:
            # httpx-aiohttp names every lost or refused connection a connect timeout; only
            # aiohttp's timeouts (TimeoutError) are: the rest is a system that cannot be
            # reached, as httpx's own transport says.
            if isinstance(exc.__cause__, TimeoutError):
                raise
            raise httpx.ConnectError(str(exc) or type(exc.__cause__).__name__,
                                     request=request) from exc.__cause__
