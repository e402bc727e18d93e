"""How old a SOAP request may be: its ``createdAt`` against the entry points' age window.

Without a signing time, a captured signed request stays valid for ever: resent after its
idempotency row was pruned (``lienthong store prune``), it would be taken for a new event. REST
requests carry the JWS ``iat``; a SOAP request carries ``createdAt`` (``schemas/soap``), checked
against the same settings with the same fault: older than ``signature_max_age``, or more than
``clock_skew`` in the future, is ``client.stale_message``.

Why an element of the request rather than a WS-Security ``wsu:Timestamp``: the hub's XML-DSig
profile signs the request element itself (enveloped signature, one Reference to its own Id;
``dsig`` explains why). A Timestamp sits in the SOAP header, outside that element, so the
signature would not cover it and anyone could put a fresh one on a captured request. Covering
it would take a second Reference, to an element outside the signed one: the very thing the
profile refuses, to rule out signature wrapping. ``createdAt`` is inside the signed element, so
the existing signature covers it, every stock tool still verifies the request as before, and it
is part of the WSDL: zeep, JAX-WS and WCF clients get it as a parameter (an xs:dateTime with
its time zone: ``XMLGregorianCalendar`` in JAX-WS, a ``DateTime`` of kind Utc or Local in WCF).

The check runs after the signature is verified, so the time it judges is the one the sender
signed. The XSD requires ``createdAt`` of every request, not only of signed ones: there are no
others (the access rules admit no unsigned SOAP request; one is ``client.missing_signature``).

Within the window, the very same request sent again is a resubmission: its idempotency key (the
client's ``idempotencyKey``, or ``UpstreamProof.idempotency_key``) finds the first answer in
the store. That row must outlive the window (``span``), which ``lienthong store prune``
enforces; after the window the request is stale, whether its row is still there or not.

Both keys are signed content, so the key of a request is the key of what its sender signed
(REST needs a row of its own for that, hub.intake.idempotency.signed_request_key, because its
Idempotency-Key is a header outside the signature). ``idempotencyKey`` is an element of the
signed request: a copy of a captured request under another key, or with a key added, is content
its sender never signed and fails the signature (``client.bad_signature``); a sender that signs
the same dossier again under a new key makes a new request, as a REST client re-signing under a
new Idempotency-Key does. Without a key, the DigestValue's digest: what travels around the
signed element (the SOAP version's envelope, its header, the SignatureValue's spelling) changes
nothing of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from lxml import etree

from hub.api.soap.mapping import CREATED_AT, CREATED_AT_TAG
from hub.errors import InvalidMessage, ValidationError
from hub.settings import Settings

STALE: Final = "client.stale_message"


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class AgeWindow:
    """``check(created)`` refuses a request signed longer than ``max_age`` seconds ago or more
    than ``clock_skew`` seconds in the future."""

    def __init__(self, *, max_age: float, clock_skew: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_age = max_age
        self.clock_skew = clock_skew
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, *,
                      clock: Callable[[], float] = time.time) -> AgeWindow:
        """The window of the entry points, as REST's verifier has it (no retry grace: a
        request is verified once, when it arrives)."""
        return cls(max_age=settings.signature_max_age, clock_skew=settings.clock_skew,
                   clock=clock)

    @property
    def span(self) -> float:
        """How long after it first arrives a request can still be accepted: a createdAt up to
        ``clock_skew`` ahead of the hub, then ``max_age``. A resend is recognised by its
        idempotency row only as long as the row is kept at least this long."""
        return self.max_age + self.clock_skew

    def check(self, created: datetime) -> None:
        age = self.clock() - created.timestamp()
        if age > self.max_age:
            raise InvalidMessage(
                f"the request was created at {_when(created)} (createdAt), {age:.0f} s ago, "
                f"more than the {self.max_age:.0f} s allowed; make it afresh (a new createdAt, "
                "signed again), and keep its idempotencyKey if it repeats a request the hub "
                "may already have kept",
                code=STALE, field=CREATED_AT)
        if -age > self.clock_skew:
            raise InvalidMessage(
                f"the request's createdAt {_when(created)} is {-age:.0f} s in the future, more "
                f"than the {self.clock_skew:.0f} s of clock skew allowed; fix the sender's "
                "clock, and send createdAt with its time zone",
                code=STALE, field=CREATED_AT)


def missing_created_at(request: etree._Element) -> ValidationError | None:
    """The error to give a request the XSD refused when what it lacks is ``createdAt``: the
    schema's own message names the element that came instead."""
    if request.find(CREATED_AT_TAG) is not None:
        return None
    name = etree.QName(request).localname
    return ValidationError(
        f"the request {name} has no createdAt; add it after idempotencyKey (if any): the time "
        "the request was made and signed, with its time zone, e.g. "
        "2025-03-01T08:00:00+07:00 (the hub refuses requests older than its age window)",
        field=CREATED_AT)
