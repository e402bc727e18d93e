"""The postal adapter's configuration: ``mappings/postal/config.toml`` (plus overrides) read
into a typed object once, with errors that name the key and say what to put there."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from hub import tomlmap
from hub.errors import ConfigError
from hub.outbound import PolicyConfig

NAME = "postal"
ORIGIN = f"system:{NAME}"


WHERE = f"mappings/{NAME}/config.toml"

def _str(raw: dict[str, Any], key: str, default: str | None = None) -> str:
    return tomlmap.string(raw, key, WHERE, default)


@dataclass(frozen=True)
class WaybillRange:
    first: str
    last: str


@dataclass(frozen=True)
class PostalConfig:
    base_url: str
    create_path: str
    tracking_path: str
    customer_code: str
    order_number: str
    api_token_env: str
    api_token_header: str
    webhook_token_env: str
    webhook_token_header: str
    page_size: int
    max_pages: int
    poll_batch: int
    state_url: str
    ranges: tuple[WaybillRange, ...]
    policy: PolicyConfig

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> PostalConfig:
        base_url = tomlmap.http_url(raw, "base_url", WHERE, "the postal service")
        order_number = _str(raw, "order_number", "{dossier_code}")
        try:
            order_number.format(dossier_code="X", direction="return")
        except (KeyError, IndexError, ValueError):
            raise ConfigError(
                f"{order_number!r} may only use {{dossier_code}} and {{direction}}",
                field="order_number",
            ) from None
        pool = raw.get("pool", {})
        ranges: list[WaybillRange] = []
        for i, entry in enumerate(pool.get("ranges", []) if isinstance(pool, dict) else []):
            if not isinstance(entry, dict) or not all(
                isinstance(entry.get(k), str) for k in ("first", "last")
            ):
                raise ConfigError(
                    'each [[pool.ranges]] needs first = "..." and last = "..."',
                    field=f"pool.ranges.{i}",
                )
            ranges.append(WaybillRange(entry["first"], entry["last"]))
        return cls(
            base_url=base_url,
            create_path=_str(raw, "create_path", "/api/v1/orders"),
            tracking_path=_str(raw, "tracking_path", "/api/v1/orders/tracking"),
            customer_code=_str(raw, "customer_code"),
            order_number=order_number,
            api_token_env=_str(raw, "api_token_env", ""),
            api_token_header=_str(raw, "api_token_header", "Token"),
            webhook_token_env=_str(raw, "webhook_token_env", ""),
            webhook_token_header=_str(raw, "webhook_token_header", "X-Postal-Token"),
            page_size=tomlmap.positive_int(raw, "page_size", WHERE, 50),
            max_pages=tomlmap.positive_int(raw, "max_pages", WHERE, 100),
            poll_batch=tomlmap.positive_int(raw, "poll_batch", WHERE, 500),
            state_url=_str(raw, "state_url", ""),
            ranges=tuple(ranges),
            policy=tomlmap.call_policy(raw),
        )

    def api_token(self) -> str | None:
        return os.environ.get(self.api_token_env) or None if self.api_token_env else None

    def webhook_token(self) -> str | None:
        return os.environ.get(self.webhook_token_env) or None if self.webhook_token_env else None
