"""The postal service's client (``hub.systemclient``): an order's Status is read by
``mappings/postal/statuses.toml`` (busy: retried, refused: permanent; a used waybill is the
worker's to handle)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapters.postal import translate
from adapters.postal.config import NAME, ORIGIN
from adapters.postal.translate import TrackItem
from hub.adapterconfig import optional_secret
from hub.errors import PermanentError, ValidationError
from hub.privacy import collect, mask
from hub.systemclient import SystemClient
from hub.transport import Reply, Request, Said

if TYPE_CHECKING:
    from adapters.postal.runtime import PostalRuntime


@dataclass(frozen=True)
class Answer:
    """The service's answer to an order: its Status, the outcome statuses.toml gives it and a
    sentence for logs and errors (the service's words masked)."""

    status: str
    outcome: str
    text: str


class PostalClient(SystemClient):
    def __init__(self, rt: PostalRuntime) -> None:
        cfg, self.cfg, self.mapping = rt.cfg, rt.cfg, rt.mapping
        token = optional_secret(cfg.api_token_env)
        super().__init__(
            NAME, "the postal service", cfg, cfg.base_url, rt.contract,
            headers={cfg.api_token_header: token} if token else None,
            auth_hint=f"the API token in {cfg.api_token_env or '(api_token_env is unset)'}")

    def explain(self, doc: dict[str, Any]) -> Said | None:
        r = self.mapping.fields.reply
        return Said(f"Status {doc.get(r.status)}: {doc.get(r.message, '')}", r.status)

    def _status(self, reply: dict[str, Any], what: str, personal: tuple[str, ...]) -> Answer:
        r = self.mapping.fields.reply
        status = str(reply[r.status])
        known = self.mapping.statuses.order_status.get(status)
        outcome = known.outcome if known else "rejected"
        text = (f"the postal service answered Status {status} "
                f"({known.meaning if known else 'not in mappings/postal/statuses.toml'}) to "
                f"{what}: {mask(str(reply.get(r.message, '')), personal)}")
        if outcome in ("retry", "rejected"):
            raise self.refused(text, r.status, retry=outcome == "retry")
        return Answer(status, outcome, text)

    async def create_order(self, message: dict[str, Any], what: str) -> Answer:
        """Send the order (``what`` names it in errors); the service's answer unless it is busy
        or refused the order."""
        personal = collect(message, self.mapping.messages.personal)

        def read(answer: Reply) -> Answer:
            return self._status(self.valid("order-reply", answer.body), what, personal)

        request = Request("create-order", self.cfg.create_path, body=message, personal=personal)
        return await self.outbound.call(request, read)

    async def tracking(self, order_number: str) -> list[TrackItem]:
        """Every tracking entry of an order, all pages read."""
        t, r = self.mapping.fields.tracking, self.mapping.fields.reply
        items: list[TrackItem] = []
        page, total = 1, 1
        while page <= total and page <= self.cfg.max_pages:
            params = {t.order_number: order_number, t.page: page,
                      t.page_size: self.cfg.page_size}
            reply = self.valid("tracking-reply", (await self.outbound.send(Request(
                "tracking", self.cfg.tracking_path, method="GET", params=params))).body)
            if self._status(reply, f"tracking of order {order_number!r}", ()).outcome != (
                    "accepted"):
                raise self.refused(
                    f"the postal service answered the tracking of order {order_number!r} with "
                    f"Status {reply[r.status]}, which is no answer to a tracking request", r.status)
            data = reply.get(r.data) or {}
            total = int(data.get(t.total_pages, 1) or 0)
            for i, doc in enumerate(data.get(t.items, [])):
                try:
                    items.append(translate.track_item(doc, self.mapping, f"Items.{i}",
                                                      order_number))
                except ValidationError as exc:
                    raise PermanentError(
                        f"page {page} of the tracking of {order_number!r}: {exc.message}",
                        code="system.bad_reply", field=exc.field, origin=ORIGIN,
                    ) from None
            page += 1
        return items
