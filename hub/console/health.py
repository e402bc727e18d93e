"""What an operator watches beyond the dead letters: readiness checks of the keeper, the
circuits and the certificates, and the pipeline's metrics (dead letters parked by reason, queue
depths and consumers, the oldest parked dead letter, circuits, certificates' remaining time,
the alert thresholds of the settings, which ops/prometheus/alerts.yml compares with).

The broker is asked with a short-lived connection (passive declares: nothing is created), at
most every ``BROKER_TTL`` seconds; scrapes and readiness probes share the answer."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from hub import circuits
from hub.broker.names import Names
from hub.broker.queueage import OldestAge, SampledLedger, sampled_age
from hub.errors import HubError
from hub.store import Store
from hub.store import operators as ops
from hub.store.tables import dead_letters

log = logging.getLogger(__name__)
BROKER_TTL = 5.0


@dataclass(frozen=True)
class QueueState:
    name: str
    role: str
    messages: int | None  # None: the queue does not exist
    consumers: int | None
    oldest: OldestAge | None = None  # a work queue's oldest message (hub.broker.queueage)


class BrokerView:
    """Depth and consumers of the terminal queues and the work queues, cached briefly."""

    def __init__(self, settings: Any, topology: Any = None,
                 ledger: SampledLedger | None = None) -> None:
        self.settings = settings
        self.topology = topology
        self.ledger = ledger
        self.names = Names(settings.name_prefix)
        self._lock = threading.Lock()
        self._at = 0.0
        self._queues: list[QueueState] | None = None
        self._error: str | None = None

    def queues(self, *, fresh: bool = False) -> tuple[list[QueueState], str | None]:
        """The queues as last seen, asked again when older than ``BROKER_TTL`` (or ``fresh``)."""
        with self._lock:
            if fresh or self._queues is None or time.monotonic() - self._at > BROKER_TTL:
                self._queues, self._error = self._ask()
                if self.ledger is not None and self._error is None:
                    self._queues = self._with_ages(self._queues, self.ledger)
                self._at = time.monotonic()
            return list(self._queues), self._error

    def _wanted(self) -> list[tuple[str, str]]:
        wanted = [(self.names.dead, "dead"), (self.names.invalid, "invalid"),
                  (self.names.unroutable, "unroutable")]
        if self.topology is not None:
            for q in self.topology.queues:
                if q.role == "work":
                    wanted.append((q.name, "work"))
        return wanted

    def _ask(self) -> tuple[list[QueueState], str | None]:
        import pika
        from pika.exceptions import AMQPError, ChannelClosedByBroker

        conn = None
        failures = []
        for url in self.settings.broker_urls:
            params = pika.URLParameters(url)
            # A probe answers in seconds or says it could not: never hang a scrape.
            params.socket_timeout = params.stack_timeout = params.blocked_connection_timeout = 2
            params.connection_attempts = 1
            params.client_properties = {"connection_name": "lienthong health"}
            try:
                conn = pika.BlockingConnection(params)
                break
            except Exception as exc:
                failures.append(repr(exc))
        if conn is None:
            return [], "broker unreachable: " + "; ".join(failures)
        out = []
        try:
            ch = conn.channel()
            for name, role in self._wanted():
                try:
                    ok = ch.queue_declare(name, passive=True)
                    out.append(QueueState(name, role, ok.method.message_count,
                                          ok.method.consumer_count))
                except ChannelClosedByBroker:
                    out.append(QueueState(name, role, None, None))
                    ch = conn.channel()
        except (AMQPError, pika.exceptions.AMQPError) as exc:
            return out, f"broker: {exc!r}"
        finally:
            if conn.is_open:
                conn.close()
        return out, None


    def _with_ages(self, queues: list[QueueState], ledger: SampledLedger) -> list[QueueState]:
        """Work queues with their oldest message's age: the management API's count of what
        was published into each, checkpointed in the ledger (``sampled_age``)."""
        from hub.broker.management import Management

        work = [q for q in queues if q.role == "work" and q.messages is not None]
        if not work:
            return queues
        aged: dict[str, OldestAge | None] = {}
        now = datetime.now(UTC)
        try:
            with Management.from_settings(self.settings) as api:
                for q in work:
                    stats = api.queue(q.name)
                    if stats.exists:
                        aged[q.name] = sampled_age(ledger, q.name, stats.published,
                                                   stats.messages, now)
        except HubError as exc:  # ages unknown this time; depths still reported
            log.warning("work queues' ages unknown: %s", exc)
        return [replace(q, oldest=aged.get(q.name)) for q in queues]


def keeper_check(view: BrokerView) -> str:
    queues, error = view.queues()
    if error:
        return f"warning: unknown ({error})"
    dead = [q for q in queues if q.role == "dead"]
    if not dead or dead[0].consumers is None:
        return f"warning: {view.names.dead} does not exist (lienthong topology apply)"
    if not dead[0].consumers:
        return (f"warning: no keeper consumes {view.names.dead} (run lienthong worker, or "
                "lienthong console keeper)")
    return "ok"


def certificates(settings: Any) -> dict[str, datetime]:
    """System id -> not_after of the hub's own certificate and every trusted one."""
    from hub.signing.keys import KeyFiles, load_certificate, system_id_of
    from hub.signing.truststore import TrustStore

    found: dict[str, datetime] = {}
    own = KeyFiles.of(settings.keys_dir, settings.hub_id).certificate
    if own.exists():
        try:
            cert = load_certificate(own)
            found[system_id_of(cert)] = cert.not_valid_after_utc
        except Exception as exc:  # a broken file is reported by the signer's own checks
            log.debug("own certificate unreadable: %s", exc)
    try:
        for entry in TrustStore(settings.trust_dir).entries():
            when = entry.not_after
            found[entry.system_id] = min(when, found.get(entry.system_id, when))
    except Exception as exc:
        log.debug("trust store unreadable: %s", exc)
    return found


def certificate_checks(settings: Any, now: datetime | None = None) -> dict[str, str]:
    now = now or datetime.now(UTC)
    out: dict[str, str] = {}
    for system, not_after in certificates(settings).items():
        days = (not_after - now).total_seconds() / 86400
        if days < 0:
            out[f"certificate:{system}"] = f"warning: expired on {not_after:%Y-%m-%d}"
        elif days < settings.alert_certificate_days:
            out[f"certificate:{system}"] = (f"warning: expires in {days:.0f} days "
                                            f"({not_after:%Y-%m-%d})")
        else:
            out[f"certificate:{system}"] = "ok"
    return out


def extra_checks(settings: Any, view: BrokerView, board: circuits.CircuitBoard
                 ) -> dict[str, str]:
    """Readiness checks that inform without making the process not ready: the keeper, each
    circuit the worker processes report (``hub.circuits``), each certificate ("ok" or
    "warning: ...")."""
    checks = {"keeper": keeper_check(view)}
    checks.update(circuits.board_checks(board))
    checks.update(certificate_checks(settings))
    return checks


class PipelineCollector(Collector):
    def __init__(self, settings: Any, store: Store, view: BrokerView,
                 board: circuits.CircuitBoard) -> None:
        self.settings = settings
        self.store = store
        self.view = view
        self.board = board

    def collect(self) -> Iterator[Metric]:
        parked = GaugeMetricFamily("lienthong_dead_letters_parked",
                                   "Dead letters waiting for an operator, by kind of reason",
                                   labels=["kind"])
        oldest = GaugeMetricFamily("lienthong_dead_letters_oldest_age_seconds",
                                   "Age of the oldest dead letter waiting for an operator")
        hour = GaugeMetricFamily("lienthong_dead_letters_last_hour",
                                 "Dead letters parked in the last hour")
        try:
            with self.store.engine.connect() as conn:
                for kind, n in ops.counts_by_kind(conn, state="parked").items():
                    parked.add_metric([kind], float(n))
                first = conn.execute(select(func.min(dead_letters.c.parked_at))
                                     .where(dead_letters.c.state == "parked")).scalar()
                since = datetime.fromtimestamp(time.time() - 3600, UTC)
                hour.add_metric([], float(ops.count_dead_letters(conn, parked_after=since)))
            if first is not None:
                if first.tzinfo is None:
                    first = first.replace(tzinfo=UTC)
                oldest.add_metric([], max(0.0, (datetime.now(UTC) - first).total_seconds()))
            else:
                oldest.add_metric([], 0.0)
        except Exception as exc:  # a scrape must not fail because the store is down
            log.debug("dead letter metrics unavailable: %s", exc)
        yield parked
        yield oldest
        yield hour
        depth = GaugeMetricFamily("lienthong_queue_messages",
                                  "Messages ready in a queue of the hub", labels=["queue", "role"])
        consumers = GaugeMetricFamily("lienthong_queue_consumers",
                                      "Consumers of a queue of the hub", labels=["queue", "role"])
        age = GaugeMetricFamily(
            "lienthong_queue_oldest_age_seconds",
            "Age of the oldest message in a work queue (ready or unacknowledged), from the "
            "broker's count of what was published into it, checkpointed at each look: short "
            "by at most the time between two looks; older than the oldest while messages back "
            "from a retry tier wait in it", labels=["queue", "role"])
        beyond = GaugeMetricFamily(
            "lienthong_queue_oldest_age_at_least",
            "1 when a work queue holds more messages than the broker counted into it since the "
            "hub's ledger began (a count the broker forgot, messages back from a retry tier): "
            "the age is the ledger's first date", labels=["queue", "role"])
        queues, _ = self.view.queues()
        for q in queues:
            if q.messages is not None:
                depth.add_metric([q.name, q.role], float(q.messages))
                consumers.add_metric([q.name, q.role], float(q.consumers or 0))
            if q.role == "work" and q.messages is not None:
                age.add_metric([q.name, q.role], q.oldest.seconds if q.oldest else 0.0)
                beyond.add_metric([q.name, q.role],
                                  1.0 if q.oldest is not None and q.oldest.at_least else 0.0)
        yield depth
        yield consumers
        yield age
        yield beyond
        certs = GaugeMetricFamily("lienthong_certificate_expiry_seconds",
                                  "Seconds until a certificate (the hub's, or a trusted one) "
                                  "expires", labels=["system"])
        now = datetime.now(UTC)
        for system, not_after in certificates(self.settings).items():
            certs.add_metric([system], (not_after - now).total_seconds())
        yield certs
        yield from circuits.BoardCollector(self.board).collect()
        threshold = GaugeMetricFamily("lienthong_alert_threshold",
                                      "Alert thresholds of the settings (alert_*), which the "
                                      "shipped alert rules compare with", labels=["alert"])
        s = self.settings
        threshold.add_metric(["dead_letters_per_hour"], float(s.alert_dead_letters_per_hour))
        threshold.add_metric(["queue_age_seconds"], float(s.alert_queue_age_minutes) * 60)
        threshold.add_metric(["certificate_seconds"], float(s.alert_certificate_days) * 86400)
        yield threshold
