"""The adapter's configuration: ``mappings/provincial/config.toml`` with the deployment's
overrides (``hub.adapterconfig``), as a typed model."""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import Field

from hub import codes
from hub.adapterconfig import (
    AdapterConfig,
    Anchor,
    HttpUrl,
    NonBlank,
    OptionalEnvName,
    UrlPath,
)


def anchor_of(agency_code: str, field: str = "agency_code") -> str:
    """The province (or ministry) letter code of an agency: ``000.20.31.H56`` -> ``H56``."""
    return codes.parse_agency(agency_code, field, strip=True).anchor


class ProvincialConfig(AdapterConfig):
    # Where dossiers go when their province has no entry in endpoints.
    base_url: HttpUrl
    submit_path: UrlPath = "/api/v1/hoso"
    api_key_header: NonBlank = "X-API-Key"
    api_key_env: OptionalEnvName = "PROVINCIAL_API_KEY"
    validate_requests: bool = True
    max_updates: Annotated[int, Field(ge=1, description="updates one callback may carry")] = 500
    # One system per province, by the letter code of the agency.
    endpoints: dict[Anchor, HttpUrl] = Field(default_factory=dict)

    def endpoint_for(self, anchor: str) -> str:
        return self.endpoints.get(anchor, self.base_url)

    def is_known(self, anchor: str) -> bool:
        return anchor in self.endpoints

    def same_province(self, a: str, b: str) -> bool:
        """Two letter codes are one province when equal, or when [endpoints] sends both to the
        same system (a province merged into another keeps its old code there)."""
        if a == b:
            return True
        return a in self.endpoints and b in self.endpoints and (
            self.endpoints[a] == self.endpoints[b]
        )

    def api_key(self) -> str | None:
        """Read per call, so a rotated key is picked up without a restart."""
        return os.environ.get(self.api_key_env) or None if self.api_key_env else None
