"""The payment gateway's client (``hub.systemclient``): a reply whose MaXacThuc does not match
is ``PermanentError``, and a refusal (MaLoi other than "00") too, unless codes.toml marks that
MaLoi as worth retrying."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters.payment.config import NAME
from adapters.payment.mapping import checksum
from hub.errors import PermanentError
from hub.privacy import collect
from hub.systemclient import SystemClient
from hub.transport import Reply, Request, Said

if TYPE_CHECKING:
    from adapters.payment.runtime import PaymentRuntime


class PaymentClient(SystemClient):
    def __init__(self, rt: PaymentRuntime) -> None:
        self.cfg, self.mapping, self._secret = rt.cfg, rt.mapping, rt.cfg.secret()
        super().__init__(NAME, "the payment gateway", rt.cfg, rt.cfg.base_url, rt.contract)
        self._personal = set(rt.mapping.messages.personal)
        self._paths = {"init": rt.cfg.init_path, "query": rt.cfg.query_path}

    async def call(self, kind: str, message: dict[str, Any]) -> dict[str, Any]:
        """Send INIT or QUERY (``kind``); the verified reply of an accepted request: INIT's
        carries the payment URL, QUERY's TrangThaiGD says paid, pending or failed."""
        request = Request(kind.upper(), self._paths[kind], body=message,
                          personal=collect(message, self._personal))
        return await self.outbound.call(request, lambda reply: self._read(reply, message, kind))

    def explain(self, doc: dict[str, Any]) -> Said | None:
        detail = doc.get(self.mapping.fields.reply.error_text)
        return Said(f"MaLoi {doc.get('MaLoi')}: {detail}", "MaLoi") if "MaLoi" in doc else None

    def _read(self, answer: Reply, message: dict[str, Any], kind: str) -> dict[str, Any]:
        reply = self.valid(f"{kind}-reply", answer.body)
        if not checksum.matches(reply, self.mapping.checksum_orders[f"{kind}_reply"], self._secret):
            raise PermanentError(
                f"the gateway's {kind.upper()} reply for {message.get('MaThamChieu')!r} carries a "
                "MaXacThuc that does not match; the reply is not trusted. Check that the shared "
                f"secret ({self.cfg.secret_env}) and mappings/payment/checksums.toml "
                f"[{kind}_reply] agree with the gateway's",
                code="system.bad_checksum", field="MaXacThuc", origin=self.origin,
            )
        code = str(reply["MaLoi"])
        if code == "00":
            return reply
        known = self.mapping.codes.errors.get(code)
        meaning = known.meaning if known else "not listed in mappings/payment/codes.toml"
        detail = reply.get(self.mapping.fields.reply.error_text)
        text = (f"the gateway refused {kind.upper()} for {message.get('MaThamChieu')!r}: MaLoi "
                f"{code} ({meaning})" + (f": {detail}" if detail else ""))
        raise self.refused(text, "MaLoi", retry=known is not None and known.retry)
