"""What goes onto the broker (``Outgoing``) and what a handler receives (``Delivery``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pika

from hub import headers as h
from hub.broker.names import slot_of
from hub.envelope import CONTENT_TYPE, Envelope
from hub.envelope import routing_key as routing_key_of

PERSISTENT = 2


class EnvelopeSigner(Protocol):
    """What ``Outgoing.signed`` needs of ``hub.signing.Signer``."""

    def sign(self, body: bytes, env: Envelope) -> str: ...


@dataclass(slots=True)
class Outgoing:
    body: bytes
    exchange: str
    routing_key: str
    message_id: str
    type: str
    headers: dict[str, Any] = field(default_factory=dict)
    app_id: str | None = None
    content_type: str = CONTENT_TYPE
    # Seconds since the epoch; None means "now, when published". Copies (retries, parked
    # messages) keep the original's.
    timestamp: int | None = None
    # The envelope's subject (its dossier), not sent: the outbox keeps it so that relays publish
    # one dossier's messages in the order they were kept (hub.outbox.relay).
    subject: str | None = None

    @classmethod
    def signed(
        cls,
        env: Envelope,
        signer: EnvelopeSigner,
        exchange: str,
        routing_key: str | None = None,
    ) -> Outgoing:
        """Serialise ``env`` once and sign exactly those bytes."""
        body = env.to_bytes()
        return cls(
            body=body,
            exchange=exchange,
            routing_key=routing_key if routing_key is not None else routing_key_of(env),
            message_id=env.id,
            type=env.type,
            headers={h.SIGNATURE: signer.sign(body, env), h.ATTEMPT: 0,
                     h.SLOT: slot_of(env.subject)},
            app_id=env.source,
            subject=env.subject,
        )

    def properties(self) -> pika.BasicProperties:
        return pika.BasicProperties(
            content_type=self.content_type,
            delivery_mode=PERSISTENT,
            message_id=self.message_id or None,
            type=self.type or None,
            app_id=self.app_id,
            timestamp=self.timestamp if self.timestamp is not None else int(time.time()),
            headers=self.headers,
        )


@dataclass(slots=True)
class Delivery:
    """One message as a handler sees it: decoded, deduplicated and verified."""

    body: bytes
    envelope: Envelope
    headers: dict[str, Any]
    queue: str
    exchange: str
    routing_key: str
    redelivered: bool
    attempt: int  # lt-attempt: 0 on the first try, n on the n-th retry
    delivery_tag: int
    message_id: str
    # The trust-store entry that verified the signature (None when the consumer verifies
    # nothing).
    signer: Any = None
    # Set by a consumer that records results itself (``record``); None: write at once.
    recording: list[tuple[Any, Callable[[Any], object]]] | None = None

    def record(self, store: Any, write: Callable[[Any], object]) -> None:
        """Have ``write(tx)`` run in a unit of work of ``store`` (``hub.store.Store``) once the
        handler has returned: what a handler writes *after* it called its system goes here, so
        that a store that cannot take the write makes the consumer retry the write, never the
        call. Under a consumer the writes of many deliveries share one transaction, run
        before what the handler returned is read and published (a write may fill in that
        sequence); outside one (a handler called directly) it runs now."""
        if self.recording is not None:
            self.recording.append((store, write))
            return
        with store.begin() as tx:
            write(tx)
