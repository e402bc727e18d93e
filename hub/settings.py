"""The hub's configuration: environment variables ``LIENTHONG_*`` over an optional TOML file
named by ``LIENTHONG_CONFIG`` over the defaults below. Nested values use ``__``
(``LIENTHONG_RETRY_TIERS='[0.2, 0.5]'``)."""

from __future__ import annotations

import ipaddress
import json
import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

_PACKAGE = Path(__file__).resolve().parent
# The directory that holds schemas/ and mappings/: in a checkout (editable install) the
# repository root, beside hub/; in an installed wheel hub/_data, where setup.py copies them.
# The checkout never has hub/_data (builds copy into their own build tree).
PROJECT_ROOT = _PACKAGE / "_data" if (_PACKAGE / "_data" / "schemas").is_dir() else _PACKAGE.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LIENTHONG_", env_nested_delimiter="__", extra="forbid"
    )

    # Where the hub keeps its files: the SQLite store, keys, the trust store.
    data_dir: Path = Path("var")
    # SQLAlchemy URL; empty means SQLite in data_dir.
    store_url: str = ""
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    # The nodes of a RabbitMQ cluster, tried in turn: a publisher or consumer whose node dies
    # reconnects to the next one (quorum queues keep their messages and serve from any node).
    # A JSON list or comma-separated URLs in LIENTHONG_AMQP_URLS. Empty: [amqp_url]. When set,
    # it wins over amqp_url, which then defaults to its first node (``broker_urls``).
    amqp_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The hub's own system identifier: it signs what it re-signs (retries are not re-signed).
    hub_id: str = "VN:GOV:000.00.00.G22:lienthong"

    schemas_dir: Path = PROJECT_ROOT / "schemas"
    mappings_dir: Path = PROJECT_ROOT / "mappings"
    # Topology: exchanges, destinations and their bindings (see mappings/topology.toml).
    topology_file: Path = PROJECT_ROOT / "mappings" / "topology.toml"
    # Name prefix of every exchange and queue, so several hubs (or test runs) share a broker.
    name_prefix: str = "lienthong"

    # Retry tiers in seconds, shared by all destinations; after the last tier, dead letters.
    retry_tiers: list[float] = Field(default_factory=lambda: [5.0, 30.0, 300.0, 1800.0, 7200.0])
    # Quorum queue delivery limit: a message redelivered more often (a consumer crashing on it)
    # is dead-lettered by the broker itself.
    delivery_limit: int = 10
    # Length limits of the terminal queues (overflow=reject-publish makes a full queue refuse,
    # never drop).
    dead_letter_max_length: int = 1_000_000
    work_queue_max_length: int = 5_000_000

    # Signature checks.
    signature_max_age: float = 300.0  # seconds between signing and receipt at an entry point
    # Inside the hub a message may wait in a queue through an outage or a peak day; its age
    # there is bounded by this, not by signature_max_age (replays are caught by processed ids).
    queued_max_age: float = 7 * 86400.0
    clock_skew: float = 60.0  # tolerated future timestamps
    default_algorithm: str = "ES256"

    # Publishing: unconfirmed publishes in flight at most (backpressure beyond).
    publish_max_in_flight: int = 1000

    # Consuming.
    prefetch: int = 500
    ack_batch: int = 100  # acks are sent in batches of up to this many (multiple=True)
    ack_interval: float = 0.05  # ...or after this many seconds, whichever comes first
    # Deliveries a worker process handles at once for one destination, unless its own
    # `concurrency` in the topology file says otherwise. An ordered destination still handles
    # one dossier's events one at a time, in order; its prefetch is raised to this if lower.
    worker_concurrency: int = Field(default=256, ge=1, le=10_000)
    # With several worker processes (`lienthong worker --processes n`), process i registers at
    # once on the partitions p with p % n == i, and on each other one as standby once its own
    # process holds it, or after this many seconds with no consumer on it (that process is not
    # running): the partitions' single active consumers are spread over the processes, and a
    # standby takes a partition over when the process that had it stops or dies.
    standby_delay: float = Field(default=5.0, ge=0)
    # This worker process's place among the worker processes of the same destinations, when
    # they are started one by one (services, containers): process `worker_process` of
    # `worker_processes` (counted from 0) takes the partitions p with p % worker_processes ==
    # worker_process first, and stands by for the others.
    worker_process: int = Field(default=0, ge=0)
    worker_processes: int = Field(default=1, ge=1)
    # The worker's event loop: uvloop (when installed) costs a draining worker less CPU per
    # delivery than asyncio's own (docs/performance.md); "asyncio" to compare or to rule it out.
    worker_event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # Allocations between two young-generation collections in a worker process (Python's
    # default is 700): a delivery allocates thousands of short-lived objects that reference
    # counting frees anyway, and the collector's passes over them cost a draining worker about
    # a tenth of its CPU (docs/performance.md#fewer-young-collections). 0 keeps Python's.
    worker_gc_threshold: int = Field(default=20_000, ge=0)

    # Ministries' subscriptions (hub.subscriptions): the access list and the personal data
    # declaration (mappings/ministries.toml), the projections (mappings/projections/*.toml).
    ministries_file: Path = PROJECT_ROOT / "mappings" / "ministries.toml"
    projections_dir: Path = PROJECT_ROOT / "mappings" / "projections"
    # RabbitMQ's management HTTP API: ministries' users and permissions, queue statistics.
    # Its user and password default to those of amqp_url (the hub's own broker user).
    management_url: str = "http://127.0.0.1:15672"
    management_user: str = ""
    management_password: str = ""
    # Each subscription's queue holds at most this many messages (overflow=reject-publish:
    # the fan-out retries rather than drop), and is reported past subscription_alert_depth
    # or when no consumer has been attached for subscription_alert_idle_minutes.
    subscription_max_length: int = Field(default=1_000_000, ge=1)
    subscription_alert_depth: int = Field(default=10_000, ge=1)
    subscription_alert_idle_minutes: float = Field(default=30.0, gt=0)
    # Seconds between two looks of each fan-out at the subscriptions' queues (what its metrics
    # report, and when a consumer was last seen).
    subscription_status_interval: float = Field(default=30.0, gt=0)
    # The history stream every event is appended to: RabbitMQ's x-max-age (a number and a
    # unit Y, M, D, h, m or s) and x-max-length-bytes.
    history_max_age: str = Field(default="30D", pattern=r"^[1-9][0-9]*(Y|M|D|h|m|s)$")
    history_max_bytes: int = Field(default=20_000_000_000, ge=1)
    # `lienthong subscriptions serve` (the fan-out in a process of its own; `lienthong worker`
    # runs one in each of its processes) answers /healthz, /readyz and /metrics here (0: none).
    fanout_metrics_port: int = Field(default=9190, ge=0, le=65535)

    # Reconnection backoff (seconds).
    reconnect_initial: float = 0.2
    reconnect_max: float = 10.0

    # `lienthong worker` answers /healthz, /readyz and /metrics (Prometheus) on this address;
    # with --processes N, process i listens on worker_metrics_port + i. Port 0: no endpoint.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(default=9180, ge=0, le=65535)

    # Operator console (hub.console). A signed-in operator's session lasts this long without
    # use; replays (one, a selection or a filter's) are published at most this many per second.
    console_session_ttl: float = Field(default=1800.0, gt=0)
    console_replay_rate: float = Field(default=50.0, gt=0)
    # Roles that see a dead letter's personal data unmasked (viewer, operator, admin).
    console_personal_data_roles: list[str] = Field(default_factory=lambda: ["admin", "operator"])
    # Alert thresholds, shown on the console and exposed as metrics (lienthong_alert_threshold)
    # for the shipped rules (ops/prometheus/alerts.yml): dead letters parked in the last hour,
    # the oldest message of a work queue in minutes, a certificate's remaining days.
    alert_dead_letters_per_hour: int = Field(default=10, ge=0)
    alert_queue_age_minutes: float = Field(default=15.0, gt=0)
    alert_certificate_days: float = Field(default=30.0, gt=0)

    # HTTP entry points.
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    max_body_bytes: int = 1_048_576
    # JSON bodies (REST, callbacks) nesting arrays and objects deeper are refused
    # (client.too_deep, hub.jsonbody). At most 256: whatever walks a value afterwards (pydantic,
    # jsonschema, json.dumps) recurses, and Python's recursion limit is 1000 frames.
    max_json_depth: int = Field(default=32, ge=1, le=256)
    # Every request, from the end of its headers to its answer, reading the body included: a
    # body that has not arrived by then is 408 client.request_timeout (and the connection is
    # closed), a hub that has not finished is 503 server.timeout.
    request_timeout: float = 10.0
    # The header phase (hub.api.protocol, run by `lienthong serve`): a client has header_timeout
    # seconds from connecting (or from the first byte of a further request on the connection) to
    # send its request line and headers (else 408 client.request_timeout), at most
    # max_header_bytes of request target, names and values in at most max_headers fields (else
    # 431 client.headers_too_large); either way the connection is closed.
    header_timeout: float = Field(default=10.0, gt=0)
    max_header_bytes: int = Field(default=32_768, ge=1024)
    max_headers: int = Field(default=100, ge=8)
    # Requests in the app at once, per process (each `lienthong serve` worker has its own cap):
    # beyond, a request is answered 503 server.busy with Retry-After at once instead of waiting
    # behind the others for the event loop, the store and memory (hub.api.limits.InFlightLimit).
    # /healthz, /readyz and /metrics are neither counted nor refused. Far above what a process
    # serves within its deadlines (about 2,000 requests/s at 100 ms p99 is some 200 in flight).
    max_in_flight: int = Field(default=1000, ge=1)
    # An idle keep-alive connection is closed after this many seconds.
    keep_alive_timeout: int = Field(default=5, ge=1)
    # `lienthong serve --workers N`: the supervisor replaces a worker that does not answer its
    # ping within this many seconds. uvicorn's 5 s counts a worker's start (spawn, imports) too,
    # and on a loaded machine that start takes longer: every worker was killed before it served
    # and started again, in a loop (seen with six busy processes on 2 cores).
    worker_healthcheck_timeout: int = Field(default=60, ge=1)
    # The hub's public base URL as its clients reach it (scheme, host, port and the path prefix
    # of a proxy, if any), e.g. https://lienthong.example.gov.vn: the SOAP service's address in
    # the served WSDL. Unset, the WSDL names the address and port the request's connection
    # arrived on (the socket's, never the Host header, which any client writes): set it whenever
    # a proxy or TLS terminator stands in front of the hub.
    public_url: str = ""
    # Group commit: while requests arrive concurrently, the intake's writer waits this long for
    # more before writing a batch; a batch's fixed cost (about ten statements and the commit's
    # fsync) is then shared by more requests. A lone request never waits.
    intake_commit_delay: float = Field(default=0.002, ge=0, le=1)
    # The GIL switch interval of the entry points' processes (sys.setswitchinterval): short, so
    # the intake's writer thread gets the GIL back soon after each database call (hub.api.app).
    switch_interval: float = Field(default=0.0005, gt=0, le=0.1)
    rate_per_client: float = 2000.0  # requests per second per upstream system
    # Upstream systems: credentials and access lists (see mappings/clients.toml).
    clients_file: Path = PROJECT_ROOT / "mappings" / "clients.toml"
    # The TLS terminators allowed to pass on a client certificate's fingerprint (header
    # X-Client-Cert-SHA256): addresses or CIDR networks of the connection's peer. A
    # certificate's SHA-256 is public, so the header proves nothing unless it was set by the
    # terminator that checked the certificate; from any other peer it is refused. Loopback
    # only by default, because the terminator usually runs beside the hub. The peer is the TCP
    # peer (uvicorn's X-Forwarded-For rewriting is off in `lienthong serve` for this reason);
    # the terminator must strip the header from what clients send.
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1"])

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        out = []
        for item in value:
            try:
                out.append(str(ipaddress.ip_network(item.strip(), strict=False)))
            except ValueError:
                # Names are refused rather than resolved: the check must not hang on DNS.
                raise ValueError(
                    f"{item!r} is not an IP address or CIDR network; list the addresses of "
                    "the TLS terminators in front of the hub (e.g. 10.0.0.5 or 10.0.0.0/24)"
                ) from None
        return out

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return ""
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
                or parts.fragment:
            raise ValueError(
                f"{value!r} is not an http(s) URL with a host and no query; give the hub's "
                "base URL as its clients reach it, e.g. https://lienthong.example.gov.vn")
        return value.rstrip("/")

    @field_validator("amqp_urls", mode="before")
    @classmethod
    def _amqp_urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except ValueError as exc:
                    raise ValueError(f"{text!r} is not a JSON list of URLs ({exc}); give a "
                                     "JSON list or comma-separated amqp:// URLs") from None
            else:
                value = text.split(",")
        if isinstance(value, list):
            urls = [str(u).strip() for u in value if str(u).strip()]
            for i, url in enumerate(urls, 1):
                # The URL itself is not repeated: it may hold a password.
                if urlsplit(url).scheme not in ("amqp", "amqps"):
                    raise ValueError(f"node {i} is not an amqp:// or amqps:// URL; list each "
                                     "node as amqp://user:password@host:port/vhost")
            return urls
        return value

    @property
    def broker_urls(self) -> list[str]:
        """The broker's nodes, in the order a client first tries them."""
        return list(self.amqp_urls) or [self.amqp_url]

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if self.amqp_urls and "amqp_url" not in self.model_fields_set:
            self.amqp_url = self.amqp_urls[0]
        if not self.store_url:
            self.store_url = f"sqlite:///{(self.data_dir / 'hub.db').resolve()}"
        if self.worker_process >= self.worker_processes:
            raise ValueError(
                f"worker_process is {self.worker_process} but there are {self.worker_processes} "
                "worker processes (worker_processes); number them from 0 to worker_processes - 1")
        return self

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def trust_dir(self) -> Path:
        return self.data_dir / "trust"

    @cached_property
    def max_attempts(self) -> int:
        """First try plus one per retry tier."""
        return len(self.retry_tiers) + 1

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get("LIENTHONG_CONFIG")
        if config:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config)))
        return tuple(sources)


def load(**overrides: Any) -> Settings:
    return Settings(**overrides)
