"""The postal service's client: httpx underneath, hub errors on top.

Transport failures are translated here, at the boundary: connection refused, timeouts, 5xx and
429 are ``RetryableError``; a 4xx is ``PermanentError``. What a reply's Status means is the
worker's business (mappings/postal/statuses.toml). Every call goes through the adapter's
``CallPolicy``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from adapters.postal import contract, translate
from adapters.postal.config import ORIGIN, PostalConfig
from adapters.postal.mapping import PostalMapping
from adapters.postal.translate import TrackItem
from hub.errors import PermanentError, RetryableError, ValidationError
from hub.httpcall import request_json
from hub.outbound import CallPolicy
from hub.privacy import scrub


class PostalClient:
    def __init__(
        self,
        cfg: PostalConfig,
        mapping: PostalMapping,
        schemas_dir: Path,
        *,
        policy: CallPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.cfg = cfg
        self.mapping = mapping
        self.schemas_dir = schemas_dir
        self.policy = policy or CallPolicy("postal", cfg.policy)
        headers = {"Accept": "application/json"}
        token = cfg.api_token()
        if token:
            headers[cfg.api_token_header] = token
        self._http = httpx.AsyncClient(
            base_url=cfg.base_url,
            timeout=httpx.Timeout(cfg.policy.timeout),
            transport=transport,
            headers=headers,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create_order(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send the order; the reply, whatever its Status (the caller maps it)."""

        async def once() -> dict[str, Any]:
            reply = await self._call("POST", self.cfg.create_path, json_body=message)
            contract.check(
                self.schemas_dir, "order-reply", reply, PermanentError, "system.bad_reply", ORIGIN
            )
            return reply

        return await self.policy.call(once)

    async def tracking(self, order_number: str) -> list[TrackItem]:
        """Every tracking entry of an order, all pages read."""
        t, r = self.mapping.tracking, self.mapping.reply
        items: list[TrackItem] = []
        page, total = 1, 1
        while page <= total and page <= self.cfg.max_pages:
            params = {
                t["order_number"]: order_number,
                t["page"]: page,
                t["page_size"]: self.cfg.page_size,
            }

            async def once(params: dict[str, Any] = params) -> dict[str, Any]:
                return await self._call("GET", self.cfg.tracking_path, params=params)

            reply = await self.policy.call(once)
            contract.check(
                self.schemas_dir,
                "tracking-reply",
                reply,
                PermanentError,
                "system.bad_reply",
                ORIGIN,
            )
            status = str(reply[r["status"]])
            known = self.mapping.order_statuses.get(status)
            if known is None or known.outcome != "accepted":
                text = f"{status} ({known.meaning if known else 'unknown status'})"
                error = (
                    RetryableError
                    if known is not None and known.outcome == "retry"
                    else (PermanentError)
                )
                raise error(
                    f"the postal service refused tracking of order {order_number!r}: {text}: "
                    f"{scrub(str(reply.get(r['message'], '')))}",
                    code="system.rejected" if error is PermanentError else "system.busy",
                    field=r["status"],
                    origin=ORIGIN,
                )
            data = reply.get(r["data"]) or {}
            total = int(data.get(t["total_pages"], 1) or 0)
            for i, doc in enumerate(data.get(t["items"], [])):
                try:
                    items.append(
                        translate.track_item(doc, self.mapping, f"Items.{i}", order_number)
                    )
                except ValidationError as exc:
                    raise PermanentError(
                        f"page {page} of the tracking of {order_number!r}: {exc.message}",
                        code="system.bad_reply",
                        field=exc.field,
                        origin=ORIGIN,
                    ) from None
            page += 1
        return items

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return await request_json(
            self._http, method, path, system="the postal service", origin=ORIGIN,
            json_body=json_body, params=params,
        )
