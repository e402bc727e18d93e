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
from hub.errors import PermanentError

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
        return produced(await handler(event_of(delivery, store)), delivery.envelope)

    return handle


def produced(result: object, handled: Envelope) -> list[Envelope]:
    """What a handler returned, checked against the contract (a sequence of envelopes). The
    handler has made its call by now: a result it got wrong parks the message for an operator
    instead of sending it to a retry, which would call the system again."""
    if isinstance(result, (list, tuple)) and all(isinstance(e, Envelope) for e in result):
        return list(result)
    raise PermanentError(
        f"the handler of {handled.type} {handled.id} returned {type(result).__name__}, not a "
        "sequence of hub.envelope.Envelope (an empty list when the event causes nothing); fix "
        "the adapter, then replay the message from the console once its system is checked",
        code="server.handler_contract", field="result")
