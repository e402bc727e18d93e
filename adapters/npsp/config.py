"""The adapter's configuration: ``mappings/npsp/config.toml`` with the deployment's overrides
(``hub.adapterconfig``), as a typed model."""

from __future__ import annotations

import os

from hub.adapterconfig import AdapterConfig, EnvName, HttpUrl, NonBlank, Texts, UrlPath
from hub.errors import ConfigError


class NpspConfig(AdapterConfig):
    base_url: HttpUrl
    auth_path: UrlPath = "/api/dvcqg/login"
    integration_path: UrlPath = "/api/dvcqg/service"
    # The header the data-sharing platform routes on.
    dstcode: NonBlank = "VN:GOV:000.00.00.G22:vpcpdvcprovider"
    madonvi: str = ""
    username_env: EnvName = "NPSP_USERNAME"
    password_env: EnvName = "NPSP_PASSWORD"
    portal_sources: Texts = ("VN:GOV:000.00.00.G22:dvcqg",)
    validate_requests: bool = True

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
