"""The postal service's webhook (``POST /v1/callbacks/postal`` on the hub): one tracking entry
pushed as it happens. A change of collection state becomes ``vn.gov.postal.tracking-updated``
(the same message polling would produce; pushed again, the same message); an entry that
changes nothing yields no event. The webhook carries a shared token (``hub.callbacktoken``;
``webhook_token_env``, ``webhook_token_header``): until the variable is set the webhook is shut
(503), by the hub's door and by this parser should it be called anyway."""

from __future__ import annotations

import functools
import logging

from adapters.postal import orders, translate
from adapters.postal.runtime import PostalRuntime
from adapters.postal.tracking import tracking_envelope
from hub.adapterconfig import optional_secret
from hub.callbacktoken import check_token
from hub.envelope import Envelope
from hub.errors import ClientError, NotFound
from hub.stateful import Part, report_body, stored

log = logging.getLogger(__name__)


class PostalWebhook(Part[PostalRuntime]):
    runtime_of = PostalRuntime.from_context

    def __call__(self, body: bytes, headers: dict[str, str]) -> list[Envelope]:
        rt = self.rt
        cfg = rt.cfg
        check_token(headers, cfg.webhook_token_header, optional_secret(cfg.webhook_token_env),
                    cfg.webhook_token_env or "(webhook_token_env names none)", "the postal webhook")
        doc = report_body(self.ctx, rt.contract, "webhook", body, "the webhook body")
        item = translate.track_item(doc, rt.mapping)
        order = rt.orders.by_waybill(item.waybill)
        if order is None:
            raise NotFound(f"no order of this hub has waybill {item.waybill!r}",
                           code="client.unknown_waybill", field="ItemCode")
        if item.order_number is not None and item.order_number != order.order_number:
            raise ClientError(
                f"waybill {item.waybill} belongs to order {order.order_number!r}, not "
                f"{item.order_number!r}",
                code="client.order_mismatch",
                field=rt.mapping.fields.tracking.order_number,
            )
        found = rt.orders.track(
            item.waybill, [item], functools.partial(tracking_envelope, rt),
            source=orders.WEBHOOK, now=rt.clock(),
            emitted=True,  # the hub's callback endpoint publishes what this returns
            terminal=rt.mapping.statuses.terminal.states)
        if not found:
            log.info("postal webhook for %s state %s: no change", item.waybill, item.state)
        return stored(found)
