"""RabbitMQ's management HTTP API, for what AMQP cannot do: users, per-vhost permissions,
bindings of a queue and queue statistics (sampled by the broker every few seconds: a count
read here may be that much late). The plugin is ``rabbitmq_management``
(``scripts/services.sh`` enables it); the hub calls it with its own broker user unless
``management_user`` says otherwise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import pika

from hub.errors import BrokerUnavailable, ConfigError
from hub.settings import Settings

TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class QueueStats:
    name: str
    exists: bool
    messages: int = 0  # ready and unacknowledged
    consumers: int = 0
    rate_in: float = 0.0  # messages/s published into the queue (the API's last sample)
    rate_out: float = 0.0  # messages/s acknowledged by its consumers
    unacked: int = 0  # delivered to consumers, not yet acknowledged
    # Messages published into the queue since the broker began counting (None: not counted
    # yet). Messages dead-lettered into it (back from a retry tier) are not among them.
    published: int | None = None


class Management:
    def __init__(self, url: str, user: str, password: str, vhost: str) -> None:
        self.url = url.rstrip("/")
        self.vhost = vhost
        self._client = httpx.Client(base_url=self.url, auth=(user, password), timeout=TIMEOUT)

    @classmethod
    def from_settings(cls, settings: Settings) -> Management:
        amqp = urlsplit(settings.broker_urls[0])
        vhost = pika.URLParameters(settings.broker_urls[0]).virtual_host
        user = settings.management_user or unquote(amqp.username or "guest")
        password = settings.management_password or unquote(amqp.password or "guest")
        return cls(settings.management_url, user, password, vhost)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Management:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: Any = None, *,
              missing_ok: bool = False) -> Any:
        try:
            answer = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise BrokerUnavailable(
                f"RabbitMQ's management API at {self.url} does not answer ({exc}); enable it "
                "(rabbitmq-plugins enable rabbitmq_management) or set "
                "LIENTHONG_MANAGEMENT_URL", field="management_url") from None
        if answer.status_code == 404 and missing_ok:
            return None
        if answer.status_code in (401, 403):
            raise ConfigError(
                f"RabbitMQ's management API refused the hub's user ({answer.status_code}); "
                "give it a user tagged administrator (LIENTHONG_MANAGEMENT_USER and "
                "LIENTHONG_MANAGEMENT_PASSWORD)", field="management_user")
        if answer.status_code >= 400:
            raise BrokerUnavailable(
                f"RabbitMQ's management API answered {method} {path} with "
                f"{answer.status_code}: {answer.text[:200]}", field="management_url")
        return answer.json() if answer.content else None

    def _v(self) -> str:
        return quote(self.vhost, safe="")

    # -- users -----------------------------------------------------------------------------

    def user_exists(self, user: str) -> bool:
        return self._call("GET", f"/api/users/{quote(user, safe='')}", missing_ok=True) is not None

    def put_user(self, user: str, password: str) -> None:
        """Create the user or set its password; no tags: it cannot use the management UI."""
        self._call("PUT", f"/api/users/{quote(user, safe='')}",
                   {"password": password, "tags": ""})

    def delete_user(self, user: str) -> None:
        self._call("DELETE", f"/api/users/{quote(user, safe='')}", missing_ok=True)

    def set_permissions(self, user: str, configure: str, write: str, read: str) -> None:
        self._call("PUT", f"/api/permissions/{self._v()}/{quote(user, safe='')}",
                   {"configure": configure, "write": write, "read": read})

    def permissions(self, user: str) -> dict[str, str] | None:
        found = self._call("GET", f"/api/permissions/{self._v()}/{quote(user, safe='')}",
                           missing_ok=True)
        return None if found is None else {k: found[k] for k in ("configure", "write", "read")}

    def close_connections(self, user: str) -> int:
        """Close the user's open connections (after a password rotation)."""
        closed = 0
        for conn in self._call("GET", "/api/connections") or []:
            if conn.get("user") == user:
                self._call("DELETE", f"/api/connections/{quote(conn['name'], safe='')}",
                           missing_ok=True)
                closed += 1
        return closed

    # -- queues ----------------------------------------------------------------------------

    def queue(self, name: str) -> QueueStats:
        found = self._call(
            "GET", f"/api/queues/{self._v()}/{quote(name, safe='')}"
            "?msg_rates_age=60&msg_rates_incr=5", missing_ok=True)
        if found is None:
            return QueueStats(name, False)
        stats = found.get("message_stats") or {}
        return QueueStats(
            name, True, int(found.get("messages") or 0), int(found.get("consumers") or 0),
            float((stats.get("publish_details") or {}).get("rate", 0.0)),
            float((stats.get("ack_details") or {}).get("rate", 0.0)),
            int(found.get("messages_unacknowledged") or 0),
            int(stats["publish"]) if "publish" in stats else None)

    def queue_bindings(self, name: str) -> list[dict[str, Any]]:
        found = self._call("GET", f"/api/queues/{self._v()}/{quote(name, safe='')}/bindings",
                           missing_ok=True)
        return list(found or [])
