"""The postal service's webhook (``POST /v1/callbacks/postal`` on the hub): one tracking entry
pushed as it happens. A change of collection state becomes ``vn.gov.postal.tracking-updated``
(the same message polling would produce); an entry that changes nothing yields no event; the
same entry pushed again yields the same message.

The webhook must carry the shared token, the value of the environment variable
``webhook_token_env`` names, in ``webhook_token_header``. Until that variable is set the
webhook is shut: the hub refuses every call (503 ``server.secret_missing``, see
``AdapterSpec.callback_secrets``), and so does this parser, should it be called anyway.
"""

from __future__ import annotations

import functools
import hmac
import logging

from adapters.postal import orders, translate
from adapters.postal.runtime import PostalRuntime
from adapters.postal.tracking import tracking_envelope
from hub.envelope import Envelope
from hub.errors import ClientError, SecretMissing
from hub.stateful import Part, report_body, stored

log = logging.getLogger(__name__)


class BadToken(ClientError):
    code = "client.bad_token"
    http_status = 401


class UnknownWaybill(ClientError):
    code = "client.unknown_waybill"
    http_status = 404


class PostalWebhook(Part[PostalRuntime]):
    runtime_of = PostalRuntime.from_context

    def __call__(self, body: bytes, headers: dict[str, str]) -> list[Envelope]:
        rt = self.rt
        self._authenticate(headers)
        doc = report_body(self.ctx, rt.contract, "webhook", body, "the webhook body")
        item = translate.track_item(doc, rt.mapping)
        order = rt.orders.by_waybill(item.waybill)
        if order is None:
            raise UnknownWaybill(
                f"no order of this hub has waybill {item.waybill!r}", field="ItemCode"
            )
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
            terminal=rt.mapping.terminal_states)
        if not found:
            log.info("postal webhook for %s state %s: no change", item.waybill, item.state)
        return stored(found)

    def _authenticate(self, headers: dict[str, str]) -> None:
        cfg = self.rt.cfg
        expected = cfg.webhook_token()
        if expected is None:
            # Never open for want of a secret: anyone could otherwise move any order's state.
            raise SecretMissing(
                "the postal webhook is shut: its shared token is not configured; the hub's "
                f"operator sets the environment variable "
                f"{cfg.webhook_token_env or '(webhook_token_env names none)'} for the "
                "hub and restarts it", field=cfg.webhook_token_header)
        name = cfg.webhook_token_header.lower()
        given = next((v for k, v in headers.items() if k.lower() == name), "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise BadToken(
                f"the webhook lacks the shared token in header {cfg.webhook_token_header}"
                " (or it is wrong)", field=cfg.webhook_token_header)
