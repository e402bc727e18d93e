"""What the handler of every destination does with an event, whatever its system: take the
canonical body of the types it handles, and refuse a request its translation built against the
system's contract as a broken mapping."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager

from pydantic import BaseModel

from hub.envelope import Envelope
from hub.errors import HubError, InvalidMessage, ValidationError
from hub.model import parse_event_data


def event_body(env: Envelope, handled: Collection[str], worker: str) -> BaseModel:
    """The canonical body of ``env``, of one of the types ``worker`` (its name in messages)
    handles; anything else is an InvalidMessage: retrying cannot make it valid."""
    if env.type not in handled:
        raise InvalidMessage(
            f"{worker} handles {list(handled)}, not {env.type!r}; check the bindings of its "
            "work queue",
            code="client.unsupported_type", field="type",
        )
    try:
        return parse_event_data(env.type, env.data)
    except HubError as exc:
        raise InvalidMessage(
            f"the {env.type} body is not valid: {exc.message}", code=exc.code, field=exc.field
        ) from None


@contextmanager
def mapping_checked(system: str, what: str) -> Iterator[None]:
    """A ``ValidationError`` raised inside is a request that breaks the system's contract
    (``schemas/<system>``) built from a valid canonical body: the mapping and the schema
    disagree, and retrying cannot help (``client.mapping_failed``)."""
    try:
        yield
    except ValidationError as exc:
        raise InvalidMessage(
            f"{what} breaks schemas/{system}: {exc.message}; check mappings/{system} against "
            "the schema",
            code="client.mapping_failed", field=exc.field,
        ) from None
