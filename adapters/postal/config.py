"""The postal adapter's configuration: ``mappings/postal/config.toml`` with the deployment's
overrides (``hub.adapterconfig``), as a typed model."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from hub.adapterconfig import (
    AdapterConfig,
    HttpUrl,
    NonBlank,
    OptionalEnvName,
    UrlPath,
)
from hub.numberranges import Range, Ranges

NAME = "postal"
ORIGIN = f"system:{NAME}"


def _order_number(value: str) -> str:
    try:
        value.format(dossier_code="X", direction="return")
    except (KeyError, IndexError, ValueError):
        raise PydanticCustomError(
            "order_number", "should use no field but {dossier_code} and {direction}") from None
    return value


Positive = Annotated[int, Field(ge=1)]


class PostalConfig(AdapterConfig):
    base_url: HttpUrl
    create_path: UrlPath = "/api/v1/orders"
    tracking_path: UrlPath = "/api/v1/orders/tracking"
    customer_code: NonBlank  # CustomerCode issued by the postal service; also the pool's
    order_number: Annotated[str, AfterValidator(_order_number)] = "{dossier_code}"
    api_token_env: OptionalEnvName = ""
    api_token_header: NonBlank = "Token"
    webhook_token_env: OptionalEnvName = ""
    webhook_token_header: NonBlank = "X-Postal-Token"
    page_size: Positive = 50
    max_pages: Positive = 100
    poll_batch: Positive = 500
    # Empty: the hub's own store, or SQLite in its data_dir (postal.db).
    state_url: str = ""
    pool: Ranges = Ranges()  # the waybill ranges

    @property
    def ranges(self) -> tuple[Range, ...]:
        return self.pool.ranges
