"""The adapter's configuration: ``mappings/npsp/config.toml`` (or the ``AdapterContext.config``
the core built from it), checked once, with errors naming the key."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from hub import tomlmap
from hub.errors import ConfigError
from hub.outbound import PolicyConfig

_WHERE = "mappings/npsp/config.toml"


@dataclass(frozen=True)
class NpspConfig:
    base_url: str
    auth_path: str = "/api/dvcqg/login"
    integration_path: str = "/api/dvcqg/service"
    dstcode: str = "VN:GOV:000.00.00.G22:vpcpdvcprovider"
    madonvi: str = ""
    username_env: str = "NPSP_USERNAME"
    password_env: str = "NPSP_PASSWORD"
    portal_sources: tuple[str, ...] = ("VN:GOV:000.00.00.G22:dvcqg",)
    validate_requests: bool = True
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> NpspConfig:
        tomlmap.only_known(raw, set(cls.__dataclass_fields__), _WHERE)
        if not isinstance(raw.get("base_url"), str) or not raw["base_url"].startswith("http"):
            raise ConfigError(
                f"must be the portal's http(s) URL, got {raw.get('base_url')!r}",
                field=f"{_WHERE} base_url",
            )
        values = dict(raw)
        values["base_url"] = raw["base_url"].rstrip("/")
        values["policy"] = PolicyConfig.from_mapping(dict(raw.get("policy", {})))
        values["portal_sources"] = tuple(raw.get("portal_sources", cls.portal_sources))
        for key in ("auth_path", "integration_path"):
            if key in values and not str(values[key]).startswith("/"):
                raise ConfigError(
                    f"must start with '/', got {values[key]!r}", field=f"{_WHERE} {key}"
                )
        return cls(**values)

    def credentials(self) -> tuple[str, str]:
        """Read when logging in, so a rotated password is picked up without a restart."""
        user = os.environ.get(self.username_env, "")
        password = os.environ.get(self.password_env, "")
        missing = [name for name, value in ((self.username_env, user),
                                            (self.password_env, password)) if not value]
        if missing:
            raise ConfigError(
                f"the portal's credentials are not set: export {' and '.join(missing)} "
                "(their names are username_env / password_env in the config)",
                field=missing[0],
            )
        return user, password
