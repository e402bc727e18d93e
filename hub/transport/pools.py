"""Many calls in flight to one system, without paying for one big connection pool.

httpcore's pool (httpx's transport) looks over every connection it holds, and every request
waiting for one, each time a request starts or a response ends: the cost of a call grows with
the calls in flight, and a worker with a few hundred deliveries in flight to a slow portal
spent most of its CPU there (docs/performance.md#small-connection-pools). ``PooledTransport``
spreads the calls over several small pools instead, each its own httpcore pool: the same
number of connections, a fraction of the bookkeeping per call.
"""

from __future__ import annotations

import itertools

import httpx

# Connections per pool: beyond a few dozen a pool's bookkeeping shows in a profile.
POOL_SIZE = 16


class PooledTransport(httpx.AsyncBaseTransport):
    """``pools`` httpx transports of ``POOL_SIZE`` connections each, taken in turn."""

    def __init__(self, pools: int, pool_size: int = POOL_SIZE) -> None:
        limits = httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size)
        self._pools = [httpx.AsyncHTTPTransport(limits=limits) for _ in range(max(1, pools))]
        self._turn = itertools.cycle(self._pools)

    @classmethod
    def for_calls(cls, in_flight: int, pool_size: int = POOL_SIZE) -> PooledTransport:
        """Enough pools for ``in_flight`` calls at once."""
        return cls(-(-max(1, in_flight) // pool_size), pool_size)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await next(self._turn).handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


def for_calls(in_flight: int) -> httpx.AsyncBaseTransport:
    """The transport for ``in_flight`` calls at once: aiohttp's pool (``hub.transport.aio``),
    or these small httpx pools in an environment installed before aiohttp was a dependency."""
    try:
        from hub.transport.aio import AiohttpPool
    except ImportError:
        return PooledTransport.for_calls(in_flight)
    return AiohttpPool.for_calls(in_flight)
