"""An adapter's handler (``hub.adapters.Handler``: a verified event in, canonical events out) as
a consumer runs it (``hub.broker.consumer.Handler``: a delivery in, messages out). The consumer
signs the events the handler returns; ``hub.recorder.logged`` adds the message log and the
dossiers' sequence numbers on top, for the workers of ``hub.runtime``."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hub.adapters import AdapterStore, Event, Handler
from hub.envelope import Envelope

if TYPE_CHECKING:  # adapters import hub.recorder, which imports this: no broker for them
    from hub.broker.consumer import Handler as ConsumerHandler
    from hub.broker.messages import Delivery


def event_of(delivery: Delivery, store: AdapterStore | None) -> Event:
    """What the adapter sees of a delivery: its envelope, its attempt, and ``record`` handing
    writes to the consumer, which runs them in ``store`` once the handler returned (without a
    store there is nowhere to record)."""
    recorder = None if store is None else functools.partial(delivery.record, store)
    return Event(delivery.envelope, delivery.attempt, recorder)


def for_consumer(handler: Handler, store: AdapterStore | None = None) -> ConsumerHandler:
    """``handler`` as a consumer's handler, what it returns left to the consumer to sign."""

    async def handle(delivery: Delivery) -> Sequence[Envelope]:
        return await handler(event_of(delivery, store))

    return handle
