"""The payment adapter's configuration: ``mappings/payment/config.toml`` with the deployment's
overrides (``hub.adapterconfig``), as a typed model."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from hub.adapterconfig import AdapterConfig, EnvName, HttpUrl, NonBlank, UrlPath, secret

NAME = "payment"


class PaymentConfig(AdapterConfig):
    base_url: HttpUrl
    init_path: UrlPath = "/api/v1/payment/init"
    query_path: UrlPath = "/api/v1/payment/query"
    partner_code: NonBlank  # MaDoiTac, issued by the gateway's operator
    version: NonBlank = "1.0.6"
    secret_env: EnvName = "LIENTHONG_PAYMENT_SECRET"
    channel_code: str = "DVCQG"
    device_code: str = "WEB"
    language: str = "vi-VN"
    currency: NonBlank = "VND"
    bank_code: str = ""
    client_ip: str = "127.0.0.1"
    description: str = "Nop phi, le phi ho so {dossier_code}"
    reconcile_after_minutes: Annotated[float, Field(gt=0, description="minutes a payment stays "
                                                    "pending before it is asked for")] = 30
    reconcile_batch: Annotated[int, Field(gt=0, description="payments asked for per run")] = 200
    # Empty: the hub's own store, or SQLite in its data_dir (payment.db).
    state_url: str = ""

    def secret(self) -> str:
        """Read when needed, so that a rotated secret is picked up without a restart."""
        return secret(self.secret_env, "secret_env", "the payment gateway's shared checksum "
                      "secret")
