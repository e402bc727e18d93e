"""The adapter's configuration: ``mappings/npsp/config.toml`` with the deployment's overrides
(``hub.adapterconfig``), as a typed model."""

from __future__ import annotations

from hub.adapterconfig import AdapterConfig, EnvName, HttpUrl, NonBlank, Texts, UrlPath


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

