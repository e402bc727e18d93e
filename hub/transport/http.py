"""The transport of systems that speak JSON over HTTP, over httpx: one attempt of a request,
its failures translated by ``hub.transport.base.failure``, its reply decoded as a JSON object
(read by ``hub.jsonbody.loads_unique``: a reply naming a member twice could be read two ways,
so it is not read at all)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from hub.errors import RetryableError
from hub.jsonbody import DuplicateMember, loads_unique
from hub.transport.base import Explain, Reply, Request, bad_reply, failure, origin_of


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

    def _client(self) -> httpx.AsyncClient:
        # Made on first use, inside the event loop that uses it.
        if self._http is None:
            self._http = httpx.AsyncClient(**self._options)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def send(self, request: Request) -> Reply:
        where = request.path.split("?", 1)[0]
        try:
            response = await self._client().request(
                request.method, request.path, json=request.body, params=request.params,
                headers=request.headers,
            )
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
        status = response.status_code
        if not 200 <= status < 300:
            try:
                doc = loads_unique(response.content)
            except (ValueError, RecursionError):
                doc = None  # an error page: its status says what there is to say
            said = self.explain(doc) if self.explain and isinstance(doc, dict) else None
            error = failure(status, response.headers, system=self.system, title=self.title,
                            operation=request.operation, said=said, auth_hint=self.auth_hint)
            assert error is not None
            raise error
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        try:
            body = loads_unique(response.content)
        except DuplicateMember as exc:
            raise bad_reply(self.system, self.title, request.operation,
                            f"names the member {exc.field} twice") from None
        except (ValueError, RecursionError):
            raise bad_reply(self.system, self.title, request.operation,
                            f"is not JSON ({kind}, {len(response.content)} bytes)") from None
        if not isinstance(body, dict):
            raise bad_reply(self.system, self.title, request.operation,
                            f"is not a JSON object ({type(body).__name__})")
        return Reply(status, body, response.headers)
