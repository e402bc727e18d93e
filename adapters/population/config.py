"""The adapter's configuration: ``mappings/population/config.toml`` with the deployment's
overrides, as a typed model; the service's address and credentials as any service's
(``hub.serviceconfig``)."""

from __future__ import annotations

from hub.adapterconfig import NonBlank
from hub.serviceconfig import ServiceConfig


class PopulationConfig(ServiceConfig):
    integration_code: NonBlank
    service_code: NonBlank
    officer: NonBlank
    lookup: bool = False
