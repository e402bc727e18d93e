"""The fan-out's copies of one event (pure logic, the shipped access list and projections): one
message per distinct projected body, signed once, addressed to every queue that gets it."""

from __future__ import annotations

import json

from subscriptions_support import BHXH, H56, HOTICH, dossier

from hub import headers as h
from hub.broker.queueage import BCC
from hub.envelope import Envelope
from hub.settings import PROJECT_ROOT, Settings
from hub.subscriptions.access import AccessList
from hub.subscriptions.fanout import copies
from hub.subscriptions.model import Subscription, SubscriptionNames

ACCESS = AccessList.read(PROJECT_ROOT / "mappings" / "ministries.toml",
                         PROJECT_ROOT / "mappings" / "projections")
SN = SubscriptionNames.of(Settings(name_prefix="lt"))


class CountingSigner:
    def __init__(self) -> None:
        self.signed: list[bytes] = []

    def sign(self, body: bytes, env: Envelope) -> str:
        self.signed.append(body)
        return f"token{len(self.signed)}"


def sub(name: str, ministry: str, projection: str, *types: str) -> Subscription:
    return Subscription.new(name, ministry, list(types), [H56], [], projection)


def test_subscriptions_of_one_projection_share_one_signed_message() -> None:
    subs = [sub(f"b{i}", BHXH, "identity-only", "vn.gov.dossier.submitted") for i in range(3)]
    subs.append(sub("ht", HOTICH, "minimal", "vn.gov.dossier.submitted"))
    signer = CountingSigner()
    out = copies(dossier(1), subs, ACCESS, signer, SN)
    assert len(out) == len(signer.signed) == 2
    by_queues = {tuple(o.headers[BCC]): o for o in out}
    identity = by_queues[("lt.sub.b0", "lt.sub.b1", "lt.sub.b2")]
    minimal = by_queues[("lt.sub.ht",)]
    assert json.loads(identity.body)["data"]["applicant"] == {"identity_number": "001090012345"}
    assert json.loads(minimal.body)["data"]["applicant"] == {}
    for o in out:  # the default exchange, no routing key: the broker routes by BCC alone
        assert (o.exchange, o.routing_key) == ("", "")
        assert o.headers[h.SIGNATURE] in ("token1", "token2")


def test_projections_removing_the_same_fields_make_one_message() -> None:
    # Neither projection keeps the officer of a status change: one body, one signature.
    subs = [sub("b", BHXH, "identity-only", "vn.gov.dossier.status-changed"),
            sub("ht", HOTICH, "minimal", "vn.gov.dossier.status-changed")]
    signer = CountingSigner()
    [out] = copies(dossier(1, type="vn.gov.dossier.status-changed"), subs, ACCESS, signer, SN)
    assert out.headers[BCC] == ["lt.sub.b", "lt.sub.ht"] and len(signer.signed) == 1
    assert "officer" not in json.loads(out.body)["data"]


def test_no_subscription_no_copy() -> None:
    assert copies(dossier(1), [], ACCESS, CountingSigner(), SN) == []


def test_a_queue_not_seen_to_exist_gets_its_copy_alone_so_its_absence_is_returned() -> None:
    subs = [sub("b0", BHXH, "identity-only", "vn.gov.dossier.submitted"),
            sub("b1", BHXH, "identity-only", "vn.gov.dossier.submitted")]
    signer = CountingSigner()
    out = copies(dossier(1), subs, ACCESS, signer, SN, present={"lt.sub.b0"})
    grouped, alone = out
    assert grouped.headers[BCC] == ["lt.sub.b0"] and grouped.routing_key == ""
    # Its own routing key: published mandatory, a missing queue makes the broker return it.
    assert alone.routing_key == "lt.sub.b1" and BCC not in alone.headers
    assert alone.body == grouped.body and len(signer.signed) == 1  # one body, one signature
