"""The transport of systems that speak JSON over HTTP, over httpx: one attempt of a request,
its failures translated by ``hub.transport.base.failure``, its reply decoded as a JSON object
(read by ``hub.jsonbody.loads_unique``: a reply naming a member twice could be read two ways,
so it is not read at all)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol, cast

import httpx

from hub.errors import RetryableError
from hub.jsonbody import DuplicateMember, loads_unique
from hub.transport.base import Explain, Reply, Request, bad_reply, failure, origin_of


class Direct(Protocol):
    """A transport that also takes a request without httpx's request and response around it
    (``hub.transport.aio.AiohttpPool.exchange``), failing with the same httpx exceptions."""

    async def exchange(self, method: str, url: str, *, headers: Mapping[str, str],
                       content: bytes | None, timeout: float,
                       ) -> tuple[int, httpx.Headers, bytes]: ...


class HttpTransport:
    """One per system (or per address): holds the connection pool. ``title`` names the system
    in messages; ``explain`` reads its error replies for what they say; ``auth_hint`` says where
    the hub's credentials for it are set (named when it answers 401 or 403)."""

    def __init__(
        self,
        system: str,
        title: str,
        *,
        base_url: str = "",
        timeout: float,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        limits: httpx.Limits | None = None,
        explain: Explain | None = None,
        auth_hint: str = "",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.system, self.title, self.base_url = system, title, base_url.rstrip("/")
        self.timeout = timeout
        self.explain, self.auth_hint = explain, auth_hint
        self._options: dict[str, Any] = {
            "base_url": self.base_url, "timeout": httpx.Timeout(timeout), "auth": auth,
            "headers": {"Accept": "application/json", **(headers or {})},
            "limits": limits or httpx.Limits(), "transport": transport,
        }
        self._http: httpx.AsyncClient | None = None
        # Plain calls (no httpx auth, no query, a path under the base URL) go straight to a
        # transport that takes them so: the same request (but for Accept-Encoding, which says
        # what aiohttp decodes) for about half the client's CPU (docs/performance.md).
        self._direct = (cast(Direct, transport)
                        if auth is None and hasattr(transport, "exchange") else None)
        # The httpx client's headers, by lower-case name: (name as sent, value).
        self._sent_headers: dict[str, tuple[str, str]] | None = None

    def _client(self) -> httpx.AsyncClient:
        # Made on first use, inside the event loop that uses it.
        if self._http is None:
            self._http = httpx.AsyncClient(**self._options)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()  # its transport with it
            self._http = None
        elif self._direct is not None:
            await self._options["transport"].aclose()

    async def _exchange(self, direct: Direct, request: Request,
                        ) -> tuple[int, httpx.Headers, bytes]:
        """``request`` as the httpx client would send it: its headers (its defaults, the
        system's, the request's), its URL under the base URL, its JSON encoded alike."""
        named = self._sent_headers
        if named is None:
            client = self._client().headers
            named = self._sent_headers = {
                k.decode(client.encoding).lower(): (k.decode(client.encoding),
                                                     v.decode(client.encoding))
                for k, v in client.raw}
        if request.headers:
            named = named | {k.lower(): (k, v) for k, v in request.headers.items()}
        content = None
        if request.body is not None:
            content = json.dumps(request.body, ensure_ascii=False, separators=(",", ":"),
                                 allow_nan=False).encode()
            if "content-type" not in named:
                named = named | {"content-type": ("Content-Type", "application/json")}
        headers = dict(named.values())
        url = f"{self.base_url}/{request.path.lstrip('/')}"
        return await direct.exchange(request.method, url, headers=headers, content=content,
                                     timeout=self.timeout)

    async def send(self, request: Request) -> Reply:
        where = request.path.split("?", 1)[0]
        direct = self._direct
        try:
            if direct is not None and not request.params and "://" not in request.path:
                status, headers, content = await self._exchange(direct, request)
            else:
                response = await self._client().request(
                    request.method, request.path, json=request.body, params=request.params,
                    headers=request.headers,
                )
                status, headers, content = (response.status_code, response.headers,
                                            response.content)
        except httpx.TimeoutException as exc:
            raise RetryableError(
                f"{self.title} did not answer {request.operation} within {self.timeout}s "
                f"({type(exc).__name__})",
                code="system.timeout", origin=origin_of(self.system),
            ) from None
        except httpx.TransportError as exc:
            raise RetryableError(
                f"{self.title} cannot be reached at {self.base_url}{where} for "
                f"{request.operation} ({type(exc).__name__}); is it up?",
                code="system.unavailable", origin=origin_of(self.system),
            ) from None
        if not 200 <= status < 300:
            try:
                doc = loads_unique(content)
            except (ValueError, RecursionError):
                doc = None  # an error page: its status says what there is to say
            said = self.explain(doc) if self.explain and isinstance(doc, dict) else None
            error = failure(status, headers, system=self.system, title=self.title,
                            operation=request.operation, said=said, auth_hint=self.auth_hint)
            assert error is not None
            raise error
        kind = headers.get("content-type", "no content type").split(";")[0]
        try:
            body = loads_unique(content)
        except DuplicateMember as exc:
            raise bad_reply(self.system, self.title, request.operation,
                            f"names the member {exc.field} twice") from None
        except (ValueError, RecursionError):
            raise bad_reply(self.system, self.title, request.operation,
                            f"is not JSON ({kind}, {len(content)} bytes)") from None
        if not isinstance(body, dict):
            raise bad_reply(self.system, self.title, request.operation,
                            f"is not a JSON object ({type(body).__name__})")
        return Reply(status, body, headers)
