"""The payment gateway's client: httpx underneath, hub errors on top.

Transport failures are translated here, at the boundary: connection refused, timeouts, 5xx and
429 are ``RetryableError`` (the gateway is down or busy); a 4xx, a reply whose checksum does not
match or a refusal (MaLoi other than "00") is ``PermanentError``, unless codes.toml marks that
MaLoi as worth retrying. Every call goes through the adapter's ``CallPolicy``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from adapters.payment import checksum, contract
from adapters.payment.config import ORIGIN, PaymentConfig
from adapters.payment.mapping import PaymentMapping
from hub.errors import PermanentError, RetryableError
from hub.httpcall import request_json
from hub.outbound import CallPolicy
from hub.privacy import scrub


class PaymentClient:
    def __init__(
        self,
        cfg: PaymentConfig,
        mapping: PaymentMapping,
        secret: str,
        schemas_dir: Path,
        *,
        policy: CallPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.cfg = cfg
        self.mapping = mapping
        self._secret = secret
        self.schemas_dir = schemas_dir
        self.policy = policy or CallPolicy("payment", cfg.policy)
        self._http = httpx.AsyncClient(
            base_url=cfg.base_url,
            timeout=httpx.Timeout(cfg.policy.timeout),
            transport=transport,
            headers={"Accept": "application/json"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def init(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send INIT; the verified reply of an accepted request (it carries the payment URL)."""
        reply = await self.policy.call(lambda: self._exchange(self.cfg.init_path, message, "init"))
        return reply

    async def query(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send QUERY; the verified reply (TrangThaiGD says paid, pending or failed)."""
        reply = await self.policy.call(
            lambda: self._exchange(self.cfg.query_path, message, "query")
        )
        return reply

    async def _exchange(self, path: str, message: dict[str, Any], kind: str) -> dict[str, Any]:
        reply = await self._post(path, message)
        contract.check(
            self.schemas_dir, f"{kind}-reply", reply, PermanentError, "system.bad_reply", ORIGIN
        )
        if not checksum.matches(reply, self.mapping.checksum_orders[f"{kind}_reply"], self._secret):
            raise PermanentError(
                f"the gateway's {kind.upper()} reply for {message.get('MaThamChieu')!r} carries a "
                "MaXacThuc that does not match; the reply is not trusted. Check that the shared "
                f"secret ({self.cfg.secret_env}) and mappings/payment/checksums.toml "
                f"[{kind}_reply] agree with the gateway's",
                code="system.bad_checksum",
                field="MaXacThuc",
                origin=ORIGIN,
            )
        code = str(reply["MaLoi"])
        if code != "00":
            known = self.mapping.error(code)
            meaning = known.meaning if known else "not listed in mappings/payment/codes.toml"
            detail = reply.get(self.mapping.reply["error_text"])
            text = (
                f"the gateway refused {kind.upper()} for {message.get('MaThamChieu')!r}: MaLoi "
                f"{code} ({meaning})" + (f": {scrub(str(detail))}" if detail else "")
            )
            if known is not None and known.retry:
                raise RetryableError(text, code="system.busy", field="MaLoi", origin=ORIGIN)
            raise PermanentError(text, code="system.rejected", field="MaLoi", origin=ORIGIN)
        return reply

    async def _post(self, path: str, message: dict[str, Any]) -> dict[str, Any]:
        return await request_json(
            self._http, "POST", path, system="the payment gateway", origin=ORIGIN,
            json_body=message,
        )
