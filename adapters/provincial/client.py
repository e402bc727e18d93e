"""The client of a provincial one-stop system: deliver a dossier, and translate every failure
into the hub's error classes at this boundary.

Each province's system is its own destination: one ``CallPolicy`` (breaker, limiter) per base
URL, so one province being down does not stop deliveries to the others.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from adapters.provincial.config import ProvincialConfig
from adapters.provincial.mapping import ProvincialMapping
from hub.errors import PermanentError, RetryableError
from hub.outbound import CallPolicy

NAME = "provincial"
ORIGIN = f"system:{NAME}"
log = logging.getLogger(__name__)


class ProvincialClient:
    def __init__(
        self,
        config: ProvincialConfig,
        mapping: ProvincialMapping,
        *,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self.mapping = mapping
        self._http = http
        self._policies: dict[str, CallPolicy] = {}

    def policy(self, base_url: str) -> CallPolicy:
        if base_url not in self._policies:
            self._policies[base_url] = CallPolicy(NAME, self.config.policy)
        return self._policies[base_url]

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.config.policy.timeout),
                headers={"Accept": "application/json"},
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _headers(self, idempotency_key: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        key = self.config.api_key()
        if key:
            headers[self.config.api_key_header] = key
        if idempotency_key:
            # The hub delivers at least once: the province can recognise a repeat.
            headers["Idempotency-Key"] = idempotency_key
        return headers

    def _refusal(self, response: httpx.Response, dossier_code: str) -> PermanentError:
        r = self.mapping.reply
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            return PermanentError(
                f"the province refused dossier {dossier_code} with HTTP {response.status_code}: "
                f"{response.text[:200]!r}",
                code="system.rejected", origin=ORIGIN,
            )
        message = str(doc.get(r["message"]) or "no message")
        field = doc.get(r["field"])
        hint = ""
        if response.status_code in (401, 403):
            hint = f"; check the API key in {self.config.api_key_env}"
        return PermanentError(
            f"the province refused dossier {dossier_code} (HTTP {response.status_code}, "
            f"{r['code']} {doc.get(r['code'])!r}): {message}{hint}",
            code="system.rejected", origin=ORIGIN,
            field=str(field) if field else None,
        )

    async def deliver(
        self, document: dict[str, Any], base_url: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """POST a dossier (already in the province's format). Returns the province's reply."""
        url = base_url + self.config.submit_path
        code = str(document.get(self.mapping.dossier["code"], "?"))
        r = self.mapping.reply

        async def once() -> dict[str, Any]:
            try:
                response = await self._client().post(
                    url, json=document, headers=self._headers(idempotency_key)
                )
            except httpx.TimeoutException:
                raise RetryableError(
                    f"the province at {base_url} did not answer within "
                    f"{self.config.policy.timeout}s",
                    code="system.timeout", origin=ORIGIN,
                ) from None
            except httpx.TransportError as exc:
                raise RetryableError(
                    f"the province cannot be reached at {url}: {type(exc).__name__}: {exc}",
                    code="system.unavailable", origin=ORIGIN,
                ) from None
            status = response.status_code
            if status >= 500 or status in (408, 429):
                raise RetryableError(
                    f"the province at {base_url} answered HTTP {status}; it is unavailable or "
                    "overloaded, the delivery will be retried",
                    code="system.unavailable", origin=ORIGIN,
                )
            if status >= 400:
                raise self._refusal(response, code)
            try:
                doc = response.json()
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                raise RetryableError(
                    f"the province's reply to dossier {code} is not a JSON object: "
                    f"{response.text[:120]!r}",
                    code="system.bad_reply", origin=ORIGIN,
                )
            # Some systems answer 200 with an error code in the body.
            if str(doc.get(r["code"])) != self.mapping.reply_ok:
                raise self._refusal(response, code)
            return doc

        return await self.policy(base_url).call(once)
