"""The payment adapter's configuration: ``mappings/payment/config.toml`` (plus overrides) read
into a typed object once, with errors that name the key and say what to put there."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hub import tomlmap
from hub.errors import ConfigError
from hub.outbound import PolicyConfig

NAME = "payment"
ORIGIN = f"system:{NAME}"


WHERE = f"mappings/{NAME}/config.toml"


def _str(raw: dict[str, Any], key: str, default: str | None = None) -> str:
    return tomlmap.string(raw, key, WHERE, default)


@dataclass(frozen=True)
class PaymentConfig:
    base_url: str
    init_path: str
    query_path: str
    partner_code: str
    version: str
    secret_env: str
    channel_code: str
    device_code: str
    language: str
    currency: str
    bank_code: str
    client_ip: str
    description: str
    reconcile_after: timedelta
    reconcile_batch: int
    state_url: str
    policy: PolicyConfig

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> PaymentConfig:
        base_url = tomlmap.http_url(raw, "base_url", WHERE, "the gateway")
        return cls(
            base_url=base_url,
            init_path=_str(raw, "init_path", "/api/v1/payment/init"),
            query_path=_str(raw, "query_path", "/api/v1/payment/query"),
            partner_code=_str(raw, "partner_code"),
            version=_str(raw, "version", "1.0.6"),
            secret_env=_str(raw, "secret_env", "LIENTHONG_PAYMENT_SECRET"),
            channel_code=_str(raw, "channel_code", "DVCQG"),
            device_code=_str(raw, "device_code", "WEB"),
            language=_str(raw, "language", "vi-VN"),
            currency=_str(raw, "currency", "VND"),
            bank_code=_str(raw, "bank_code", ""),
            client_ip=_str(raw, "client_ip", "127.0.0.1"),
            description=_str(raw, "description", "Nop phi, le phi ho so {dossier_code}"),
            reconcile_after=timedelta(
                minutes=tomlmap.positive_number(raw, "reconcile_after_minutes", WHERE, 30)
            ),
            reconcile_batch=int(tomlmap.positive_number(raw, "reconcile_batch", WHERE, 200)),
            state_url=_str(raw, "state_url", ""),
            policy=tomlmap.call_policy(raw),
        )

    def secret(self) -> str:
        """The shared checksum secret, from the environment variable the config names."""
        value = os.environ.get(self.secret_env, "")
        if not value:
            raise ConfigError(
                f"the environment variable {self.secret_env} holding the payment gateway's "
                "shared checksum secret is not set; export it (the secret is never kept in a file)",
                field="secret_env",
            )
        return value
