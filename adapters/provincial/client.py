"""The client of a provincial one-stop system over the hub's transport (``hub.transport``:
failures, masking, call policy and metrics): deliver a dossier, and read the province's answer.

Each province's system is its own destination: one ``CallPolicy`` (breaker, limiter) per base
URL, so one province being down does not stop deliveries to the others; the connection pool is
shared.
"""

from __future__ import annotations

import logging
from typing import Any

from adapters.provincial.config import ProvincialConfig
from adapters.provincial.mapping import ProvincialMapping
from hub.errors import PermanentError
from hub.outbound import CallPolicy
from hub.privacy import collect
from hub.transport import HttpTransport, Outbound, Reply, Request, Said

NAME = "provincial"
ORIGIN = f"system:{NAME}"
log = logging.getLogger(__name__)


class ProvincialClient:
    def __init__(self, config: ProvincialConfig, mapping: ProvincialMapping) -> None:
        self.config = config
        self.mapping = mapping
        self._transport = HttpTransport(
            NAME, "the province", timeout=config.policy.timeout, explain=self._explain,
            auth_hint=f"the API key in {config.api_key_env}",
        )
        self._outbound: dict[str, Outbound] = {}
        a = mapping.applicant
        self._personal = {a[k] for k in ("identity_number", "name", "birth_date", "address",
                                         "phone", "email") if k in a}

    def _to(self, base_url: str) -> Outbound:
        if base_url not in self._outbound:
            self._outbound[base_url] = Outbound(self._transport,
                                                CallPolicy(NAME, self.config.policy))
        return self._outbound[base_url]

    async def aclose(self) -> None:
        await self._transport.aclose()

    def _headers(self, idempotency_key: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        key = self.config.api_key()
        if key:
            headers[self.config.api_key_header] = key
        if idempotency_key:
            # The hub delivers at least once: the province can recognise a repeat.
            headers["Idempotency-Key"] = idempotency_key
        return headers

    def _explain(self, doc: dict[str, Any]) -> Said:
        r = self.mapping.reply
        field = doc.get(r["field"])
        return Said(f"{r['code']} {doc.get(r['code'])!r}: {doc.get(r['message']) or 'no message'}",
                    str(field) if field else None)

    def _read(self, reply: Reply) -> dict[str, Any]:
        doc: dict[str, Any] = reply.body
        # Some systems answer 200 with an error code in the body.
        if str(doc.get(self.mapping.reply["code"])) != self.mapping.reply_ok:
            said = self._explain(doc)
            raise PermanentError(
                f"the province refused the dossier (HTTP {reply.status}, {said.text})",
                code="system.rejected", origin=ORIGIN, field=said.field,
            )
        return doc

    async def deliver(
        self, document: dict[str, Any], base_url: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """POST a dossier (already in the province's format). Returns the province's reply."""
        request = Request(
            "submit", base_url + self.config.submit_path, body=document,
            headers=self._headers(idempotency_key), personal=collect(document, self._personal),
        )
        return await self._to(base_url).call(request, self._read)
