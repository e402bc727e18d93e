"""The settings of a service the hub calls at one address (``ServiceConfig``, a base of an
adapter's model): the address from the file or from an environment variable that overrides it,
the connections kept open to it and, when it demands them, HTTP basic credentials from the
environment. The variables are read once, when the configuration is loaded."""

from __future__ import annotations

from typing import Annotated, Self

import httpx
from pydantic import Field, PrivateAttr, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from hub.adapterconfig import (
    AdapterConfig,
    HttpUrl,
    OptionalEnvName,
    Section,
    SettingProblem,
    environ_of,
    http_url,
)


class BasicAuthEnv(Section):
    """Names of the environment variables holding the HTTP basic credentials, if the service
    demands them."""

    username_env: OptionalEnvName = ""
    password_env: OptionalEnvName = ""


class ServiceConfig(AdapterConfig):
    # The service's address (a SOAP service's overrides the WSDL's soap:address).
    file_url: Annotated[HttpUrl, Field(alias="url")]
    url_env: OptionalEnvName = ""
    max_connections: Annotated[int, Field(ge=1, le=1000, description="connections kept open "
                                                                       "to the service")] = 20
    auth: BasicAuthEnv = BasicAuthEnv()

    _url: str = PrivateAttr("")
    _username: str | None = PrivateAttr(None)
    _password: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _from_environment(self, info: ValidationInfo) -> Self:
        env = environ_of(info)
        url = (env.get(self.url_env) if self.url_env else None) or self.file_url
        if url != self.file_url:
            try:
                url = http_url(url)
            except PydanticCustomError:
                raise SettingProblem(
                    "url_env", f"the variable {self.url_env} holds {url!r}, not an http(s) URL "
                    "of the service; correct it or unset it") from None
        self._url = url
        username = env.get(self.auth.username_env) if self.auth.username_env else None
        password = env.get(self.auth.password_env) if self.auth.password_env else None
        if bool(username) != bool(password):
            raise SettingProblem(
                "auth", f"only one of {self.auth.username_env} and {self.auth.password_env} is "
                "set; set both for HTTP basic authentication, or neither")
        self._username, self._password = username or None, password or None
        return self

    @property
    def url(self) -> str:
        """The service's address: the variable named by ``url_env`` when set, else ``url``."""
        return self._url

    @property
    def username(self) -> str | None:
        return self._username

    @property
    def password(self) -> str | None:
        return self._password

    def basic_auth(self) -> httpx.BasicAuth | None:
        """The HTTP basic authentication of the calls, when the credentials are set."""
        if self._username and self._password:
            return httpx.BasicAuth(self._username, self._password)
        return None
