"""The adapter's configuration (``mappings/population/config.toml`` plus overrides), checked
once, with errors naming the key."""

from __future__ import annotations

import os
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from typing import Any

from hub.errors import ConfigError
from hub.outbound import PolicyConfig

FILE = "config.toml"
_KEYS = {"url", "url_env", "integration_code", "service_code", "officer", "lookup",
         "max_connections", "auth", "policy"}


@dataclass(frozen=True, slots=True)
class PopulationConfig:
    url: str
    integration_code: str
    service_code: str
    officer: str
    lookup: bool
    max_connections: int
    username: str | None
    password: str | None
    policy: PolicyConfig

    @classmethod
    def from_mapping(
        cls, raw: MappingABC[str, Any], environ: MappingABC[str, str] | None = None
    ) -> PopulationConfig:
        env = os.environ if environ is None else environ
        unknown = sorted(set(raw) - _KEYS)
        if unknown:
            raise ConfigError(f"unknown keys {unknown}; known: {sorted(_KEYS)}", field=FILE)
        url_env = _optional_str(raw, "url_env")
        url = (env.get(url_env) if url_env else None) or _str(raw, "url")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{url!r} is not an http(s) URL of the service", field="url")
        lookup = raw.get("lookup", False)
        if not isinstance(lookup, bool):
            raise ConfigError(f"must be true or false, got {lookup!r}", field="lookup")
        max_connections = raw.get("max_connections", 20)
        if not isinstance(max_connections, int) or isinstance(max_connections, bool) or not (
            1 <= max_connections <= 1000
        ):
            raise ConfigError(f"must be an integer from 1 to 1000, got {max_connections!r}",
                              field="max_connections")
        auth = raw.get("auth", {})
        if not isinstance(auth, MappingABC):
            raise ConfigError("must be a table", field="auth")
        unknown_auth = sorted(set(auth) - {"username_env", "password_env"})
        if unknown_auth:
            raise ConfigError(f"unknown keys {unknown_auth}; known: username_env, password_env",
                              field="auth")
        username = env.get(auth["username_env"]) if auth.get("username_env") else None
        password = env.get(auth["password_env"]) if auth.get("password_env") else None
        if bool(username) != bool(password):
            raise ConfigError(
                f"only one of {auth.get('username_env')} and {auth.get('password_env')} is set; "
                "set both for HTTP basic authentication, or neither",
                field="auth",
            )
        policy = raw.get("policy", {})
        if not isinstance(policy, MappingABC):
            raise ConfigError("must be a table", field="policy")
        return cls(
            url=url,
            integration_code=_str(raw, "integration_code"),
            service_code=_str(raw, "service_code"),
            officer=_str(raw, "officer"),
            lookup=lookup,
            max_connections=max_connections,
            username=username or None,
            password=password or None,
            policy=PolicyConfig.from_mapping(dict(policy)),
        )


def _str(raw: MappingABC[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"must be a non-empty string, got {value!r}; see {FILE}", field=key)
    return value.strip()


def _optional_str(raw: MappingABC[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"must be a string, got {value!r}", field=key)
    return value or None
