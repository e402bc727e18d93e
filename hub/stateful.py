"""The scaffold of an adapter whose system answers later: a request, then the system's reports by
callback or by polling, then reconciliation of what is still open (a payment the gateway
settles, an order the postal service tracks).

Such an adapter keeps state of its own (a ledger, orders) behind a small port of its own: a
``Protocol`` with the real SQLAlchemy implementation on the hub store's engine
(``state_engine``) and an in-memory fake for unit tests. It is written with:

- ``Runtime``: what its worker, callback parser and jobs share, built once from its context;
- ``Requested``: what a record keeps of the request it answers, and the events it causes
  (``caused``), tied to that request's dossier, correlation and causation;
- ``StatefulWorker``: the handler of its work queue: the event's type checked, bad canonical
  data never retried (``canonical``);
- ``report_body``: a report the system pushes (a callback), parsed and checked against the
  system's contract;
- ``Sweep`` and ``sweep``: a reconciliation or polling pass over what is open, which stops at
  the first sign that the system is not answering; ``open_pass`` adds the events found
  earlier whose publication was never confirmed; ``run_job`` publishes what it found and
  marks it emitted once the broker confirmed it.

Events the adapter emits are stored with its state (``event_json``) and re-emitted byte for
byte (``stored``): a redelivered request or a report made twice yields the same message.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from hub import adaptertables, tomlmap
from hub.adapters import AdapterContext, Event
from hub.adaptertables import aware
from hub.contracts import Contract, load_contract
from hub.envelope import Envelope
from hub.errors import ClientError, HubError, InvalidMessage, ValidationError
from hub.jsonbody import parse_json
from hub.model import check_time
from hub.privacy import scrub
from hub.wiredates import WireDates

log = logging.getLogger(__name__)
C = TypeVar("C")
M = TypeVar("M")
T = TypeVar("T")
V = TypeVar("V")
F = TypeVar("F", bound=BaseModel)
R = TypeVar("R", bound="Runtime[Any, Any]")
# Failures that say the system is not answering at all: a pass stops at the first.
UNREACHABLE = frozenset({"server.circuit_open", "system.unavailable", "system.timeout"})


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(kw_only=True)
class Runtime(Generic[C, M]):
    """What an adapter's worker, callback parser and jobs share: its configuration, its mapping,
    its system's contract (``schemas/<name>/``), the hub's id and a clock. An adapter adds its
    state's port."""

    cfg: C
    mapping: M
    contract: Contract
    hub_id: str
    clock: Callable[[], datetime] = utcnow


@dataclass(frozen=True, kw_only=True)
class Requested:
    """What a record of an adapter's state keeps of the request it answers
    (``hub.statestore.request_columns``), for the events it causes later: a callback's or a
    poll's event belongs to the request's dossier, correlation and causation."""

    dossier_code: str
    agency: str | None
    procedure: str | None
    request_id: str
    correlation_id: str | None
    created_at: datetime

    @staticmethod
    def of(env: Envelope, dossier_code: str, now: datetime, *, agency: str | None = None,
           procedure: str | None = None) -> dict[str, Any]:
        """The fields of the record of ``env``'s request (``agency``, ``procedure``: the
        request body's, when the envelope does not say)."""
        return {"dossier_code": dossier_code, "agency": env.agency or agency,
                "procedure": env.procedure or procedure, "request_id": env.id,
                "correlation_id": env.correlationid or env.id, "created_at": now}

    def caused(self, *, id: str, source: str, type: str, data: dict[str, Any], time: datetime,
               causation: str | None = None) -> Envelope:
        """An event this record's request causes (``causation``: the event that caused it,
        when it is not the request)."""
        return Envelope.new(id=id, source=source, type=type, subject=self.dossier_code, data=data,
                            agency=self.agency, procedure=self.procedure,
                            correlationid=self.correlation_id,
                            causationid=causation or self.request_id, time=time)


def shared(ctx: AdapterContext, name: str) -> dict[str, Any]:
    """The ``Runtime`` fields every adapter takes from its context."""
    return {"contract": load_contract(ctx.settings.schemas_dir / name),
            "hub_id": ctx.settings.hub_id}


def state_engine(ctx: AdapterContext, state_url: str, filename: str,
                 metadata: sa.MetaData) -> Engine:
    """The engine of an adapter's tables, created there unless they exist: the hub store's,
    else ``state_url``, else SQLite ``filename`` in the data directory."""
    engine = adaptertables.engine_for(ctx.store, state_url, ctx.settings.data_dir, filename)
    adaptertables.ensure_schema(engine, metadata)
    return engine


def record(cls: Callable[..., T], row: Mapping[Any, Any]) -> T:
    """A dataclass of an adapter's state from a row of its table: the columns it has a field
    for, times as aware UTC."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{key: aware(value) if isinstance(value, datetime) else value
                  for key, value in row.items() if key in names})


def insert_once(engine: Engine, table: sa.Table, values: Mapping[str, Any]) -> None:
    """Insert a row unless its key is there already (a redelivered request: the caller reads
    the row that was kept)."""
    try:
        with adaptertables.writing(engine) as conn:
            conn.execute(sa.insert(table).values(dict(values)))
    except IntegrityError:
        pass


def event_json(env: Envelope) -> str:
    """An event as it is stored, to be re-emitted byte for byte."""
    return json.dumps(env.to_dict(), ensure_ascii=False, default=str)


def stored(texts: Iterable[str]) -> list[Envelope]:
    return [Envelope.from_bytes(text.encode()) for text in texts]


class WireTime(WireDates):
    """A system's times (``hub.wiredates``) that the adapter keeps, in UTC, before the
    canonical model sees them: read only if the model would take them (``check_time``)."""

    def read(self, text: object, field: str) -> datetime:
        return check_time(WireDates.read(self, text, field), field)


def wire_names(doc: dict[str, Any], key: str, keys: Iterable[str],
               where: str = "fields.toml") -> dict[str, str]:
    """The table ``[key]`` of a mapping file: each of ``keys`` as a system's field name; a gap
    is an error at ``key`` itself, as operators know it ("receipt.payer_name")."""
    return tomlmap.wire_names(tomlmap.table(doc, key, where, field=key), tuple(keys),
                              f"{where} [{key}]")


def wire_time(doc: dict[str, Any], where: str = "fields.toml") -> WireTime:
    """The ``time_format`` and ``timezone`` of a mapping file (yyyyMMddHHmmss in Vietnam's time
    by default)."""
    return WireTime(*tomlmap.wire_time(doc, where))


def fields_file(model: type[F], path: Path) -> tuple[F, WireTime]:
    """A system's fields file (``mappings/<name>/fields.toml``) checked into ``model``
    (``tomlmap.checked``, dotted), and the time of its wire (``wire_time``)."""
    doc = tomlmap.read(path)
    return tomlmap.checked(model, doc, path.name, dotted=True), wire_time(doc, path.name)


def decoded(codes: Mapping[str, V], raw: Any, field: str, what: str, where: str) -> V:
    """What a system's code ``raw`` means by a table of its mapping (``where``: the file and
    table); a code the table lacks is a gap of the mapping, never worth retrying as it is."""
    found = codes.get(str(raw))
    if found is None:
        raise ValidationError(f"{raw!r:.20} is not a known {what}; known: {sorted(codes)} "
                              f"({where})", code="client.mapping_failed", field=field)
    return found


def whole_dong(amount: Decimal, field: str) -> int:
    """An amount as it goes on the wire, in whole dong: the currency has no minor unit."""
    if amount != amount.to_integral_value():
        raise ValidationError(
            f"{amount} has a fractional part; VND amounts are whole numbers of dong", field=field)
    return int(amount)


@contextmanager
def canonical() -> Iterator[None]:
    """Bad canonical data in a message, or data its translation cannot carry, is never worth
    retrying: ``ValidationError`` becomes ``InvalidMessage``, its identity numbers masked."""
    try:
        yield
    except ValidationError as exc:
        raise InvalidMessage(scrub(exc.message), code=exc.code, field=exc.field,
                             origin=exc.origin) from None


class Closable(Protocol):
    async def aclose(self) -> None: ...


class Part(Generic[R]):
    """A part of a stateful adapter (its worker, its callback parser): the context and the
    runtime built from it by ``runtime_of`` (the Runtime's ``from_context``), unless one is
    given (a test's)."""

    # (ctx) -> R; declared loosely because a callable class attribute reads as a method.
    runtime_of: ClassVar[Callable[..., Any]]

    def __init__(self, ctx: AdapterContext, runtime: R | None = None) -> None:
        self.ctx = ctx
        self.rt: R = runtime or self.runtime_of(ctx)


class StatefulWorker(Part[R]):
    """The handler of a stateful adapter's work queue (``hub.adapters.Handler``). ``handle``
    gets the verified event, of the type ``consumes`` names, and returns the events it
    causes, calling its system with the client ``client_of`` builds from the runtime."""

    consumes: ClassVar[str]
    client_of: ClassVar[Callable[..., Closable]]  # (runtime) -> client

    def __init__(self, ctx: AdapterContext, runtime: R | None = None) -> None:
        super().__init__(ctx, runtime)
        self.client = self.client_of(self.rt)

    async def __call__(self, event: Event) -> list[Envelope]:
        return await self.process(event.envelope)

    async def process(self, env: Envelope) -> list[Envelope]:
        if env.type != self.consumes:
            raise InvalidMessage(
                f"this worker handles {self.consumes}, not {env.type}; check the work queue's "
                "bindings", code="client.unexpected_type", field="type")
        return await self.handle(env)

    async def handle(self, env: Envelope) -> list[Envelope]:
        raise NotImplementedError

    async def aclose(self) -> None:
        await self.client.aclose()


def report_body(ctx: AdapterContext, contract: Contract, kind: str, body: bytes,
                what: str) -> dict[str, Any]:
    """A report the system pushed (``what``: "the callback body"), parsed by the hub's JSON
    parser and checked against the system's ``kind`` contract."""
    doc = parse_json(body, max_depth=ctx.settings.max_json_depth, what=what)
    if not isinstance(doc, dict):
        raise ClientError(f"{what} is not a JSON object", code="client.unparseable")
    contract.validate(kind, doc, error=ValidationError, code="client.schema_invalid")
    return doc


@dataclass
class Sweep:
    """What a reconciliation or polling pass did: counts by outcome, the failures, and the
    events to publish."""

    counts: dict[str, int] = field(default_factory=dict)
    errors: list[HubError] = field(default_factory=list)
    events: list[Envelope] = field(default_factory=list)

    @classmethod
    def of(cls, *outcomes: str) -> Sweep:
        return cls(counts=dict.fromkeys(outcomes, 0))

    def count(self, outcome: str, by: int = 1) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + by

    def summary(self) -> str:
        return json.dumps({**self.counts, "events": len(self.events),
                           "errors": [e.to_dict() for e in self.errors]}, ensure_ascii=False)


async def sweep(report: Sweep, items: Iterable[T], check: Callable[[T], Awaitable[None]],
                what: Callable[[T], str]) -> Sweep:
    """``check`` each item in turn; a failure is kept and logged, and when the system is not
    answering the rest waits for the next pass."""
    for item in items:
        try:
            await check(item)
        except HubError as exc:
            report.errors.append(exc)
            log.warning("%s failed: %s", what(item), exc)
            if exc.code in UNREACHABLE:
                break
    return report


async def open_pass(report: Sweep, items: Iterable[T], check: Callable[[T], Awaitable[None]],
                    what: Callable[[T], str], unemitted: Callable[[], list[str]],
                    client: Closable | None = None) -> Sweep:
    """A pass over what is open (``sweep``), then the events to publish: ``unemitted`` reads
    those recorded whose publication was never confirmed, this pass's included. ``client``,
    the pass's own, is closed after it."""
    try:
        await sweep(report, items, check, what)
    finally:
        if client is not None:
            await client.aclose()
    report.events = stored(await asyncio.to_thread(unemitted))
    return report


async def run_job(report: Sweep, publish: Callable[[Envelope], Awaitable[None]],
                  mark: Callable[[list[str]], object]) -> Sweep:
    """Publish a pass's events (``publish`` resolves once the broker confirmed one), then mark
    them emitted: a failure part-way leaves the rest for the next pass."""
    await adaptertables.publish_then_mark(report.events, publish, mark)
    return report
