"""The adapter's configuration: ``mappings/provincial/config.toml`` (or the
``AdapterContext.config`` the core built from it), checked once, with errors naming the key."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from hub import codes, tomlmap
from hub.errors import ConfigError
from hub.outbound import PolicyConfig

_WHERE = "mappings/provincial/config.toml"
_ANCHOR_RE = re.compile(r"^[A-Z]\d{2}$")


def anchor_of(agency_code: str, field: str = "agency_code") -> str:
    """The province (or ministry) letter code of an agency: ``000.20.31.H56`` -> ``H56``."""
    return codes.parse_agency(agency_code, field, strip=True).anchor


@dataclass(frozen=True)
class ProvincialConfig:
    base_url: str
    submit_path: str = "/api/v1/hoso"
    api_key_header: str = "X-API-Key"
    api_key_env: str = "PROVINCIAL_API_KEY"
    validate_requests: bool = True
    max_updates: int = 500
    endpoints: dict[str, str] = field(default_factory=dict)
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> ProvincialConfig:
        tomlmap.only_known(raw, set(cls.__dataclass_fields__), _WHERE)
        values = dict(raw)
        values["base_url"] = _url(raw.get("base_url"), "base_url")
        endpoints = raw.get("endpoints", {})
        if not isinstance(endpoints, dict):
            raise ConfigError("must be a table of letter code = URL", field=f"{_WHERE} endpoints")
        for anchor in endpoints:
            if not _ANCHOR_RE.match(anchor):
                raise ConfigError(
                    f"{anchor!r} is not a province letter code like 'H56'",
                    field=f"{_WHERE} [endpoints].{anchor}",
                )
        values["endpoints"] = {
            anchor: _url(url, f"[endpoints].{anchor}") for anchor, url in endpoints.items()
        }
        values["policy"] = PolicyConfig.from_mapping(dict(raw.get("policy", {})))
        if not str(values.get("submit_path", cls.submit_path)).startswith("/"):
            raise ConfigError("must start with '/'", field=f"{_WHERE} submit_path")
        return cls(**values)

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
        return os.environ.get(self.api_key_env) or None


def _url(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ConfigError(f"must be an http(s) URL, got {value!r}", field=f"{_WHERE} {key}")
    return value.rstrip("/")
