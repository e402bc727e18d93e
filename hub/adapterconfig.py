"""An adapter's configuration, declared once as a typed model and read from its files.

Each adapter declares a subclass of ``AdapterConfig`` (pydantic) with its settings, their types
and ranges; the hub reads ``mappings/<name>/config.toml`` (the shipped defaults) and merges a
deployment's ``<data_dir>/adapters/<name>.toml`` over it key by key, remembering which file set
each key, so that an error names the file to open, the key (dotted: ``policy.rate_per_second``)
and what is expected there. A key no model declares is refused: a typo is never ignored in
silence. Secrets never sit in these files: a setting ending in ``_env`` names the environment
variable that holds one (``secret(name, key)`` reads it, when it is needed).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

from hub.errors import ConfigError
from hub.outbound import PolicyConfig

if TYPE_CHECKING:
    from hub.adapters import AdapterContext
    from hub.settings import Settings

__all__ = [
    "AdapterConfig",
    "AdapterConfigError",
    "CallPolicySection",
    "ConfigData",
    "EnvName",
    "HttpUrl",
    "NonBlank",
    "OptionalEnvName",
    "Section",
    "SettingProblem",
    "Texts",
    "UrlPath",
    "environ_of",
    "http_url",
    "layered",
    "load_adapter_config",
    "optional_secret",
    "overlay_dir",
    "parse_adapter_config",
    "read_adapter_config",
    "secret",
]

C = TypeVar("C", bound="AdapterConfig")

# Where a dict built in code (a test's, a demo's) came from, when it names no file.
IN_CODE = "the configuration given in code"

Loc = tuple[str | int, ...]


class ConfigData(dict[str, Any]):
    """An adapter's raw configuration (what ``AdapterContext.config`` holds): the merged
    tables, and which file set each key, so a model's error can name that file. A plain dict
    works wherever this does; its errors then name no file."""

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        files: Sequence[str] = (),
        origin: Mapping[tuple[str, ...], str] | None = None,
    ) -> None:
        super().__init__(data or {})
        self.files = tuple(files)
        self.origin = dict(origin or {})

    def source_of(self, loc: Sequence[str | int]) -> str | None:
        """The file that set ``loc`` (or the nearest table above it that one file set)."""
        path = tuple(str(part) for part in loc)
        for end in range(len(path), 0, -1):
            found = self.origin.get(path[:end])
            if found is not None:
                return found
        return None


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AdapterConfigError(f"{path} cannot be read: {exc}; fix the file",
                                 file=str(path)) from exc


def _merge_into(
    out: dict[str, Any], over: Mapping[str, Any], source: str, at: tuple[str, ...],
    origin: dict[tuple[str, ...], str],
) -> None:
    for key, value in over.items():
        path = (*at, str(key))
        current = out.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            # Merged key by key: a table an overlay names keeps the base's other keys.
            merged = dict(current)
            _merge_into(merged, value, source, path, origin)
            out[key] = merged
            origin.setdefault(path, source)
            continue
        out[key] = value
        for known in [p for p in origin if p[: len(path)] == path]:
            del origin[known]
        origin[path] = source


def layered(*layers: tuple[str, Mapping[str, Any]]) -> ConfigData:
    """The layers ``(source, table)`` merged in order, each over the ones before it key by key
    (tables merge, other values replace), remembering which source set each key."""
    merged: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    files: list[str] = []
    for source, table in layers:
        files.append(source)
        _merge_into(merged, table, source, (), origin)
    return ConfigData(merged, files=files, origin=origin)


def overlay_dir(settings: Settings) -> Path:
    """Where a deployment keeps its adapter overrides: ``<data_dir>/adapters/``."""
    return Path(settings.data_dir) / "adapters"


def read_adapter_config(
    mappings_dir: Path, name: str, overlay: Path | None = None
) -> ConfigData:
    """``mappings/<name>/config.toml`` (the shipped defaults) with ``<overlay>/<name>.toml``
    merged over it key by key (a deployment's own endpoints and limits, kept out of the
    repository). Empty if neither exists."""
    base = Path(mappings_dir) / name / "config.toml"
    layers = [(str(base), _read_toml(base))]
    if overlay is not None:
        over = overlay / f"{name}.toml"
        if over.exists():
            layers.append((str(over), _read_toml(over)))
    return layered(*layers)


# -- errors -------------------------------------------------------------------------------------


class AdapterConfigError(ConfigError):
    """A setting of an adapter is wrong. ``field`` is its dotted key, ``file`` the file that
    set it (or, for a missing key, the files that could)."""

    def __init__(self, message: str, *, field: str | None = None, file: str = "") -> None:
        super().__init__(message, field=field)
        self.file = file


class SettingProblem(Exception):
    """Raised by a model's own checks (those that read the environment, or look at several
    settings at once) for the setting ``key``; the loader turns it into an
    ``AdapterConfigError`` naming the file. Not a ValueError on purpose: pydantic lets it
    through untouched."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def _key(loc: Loc) -> str:
    # A dict's key that fails its own type is reported by pydantic at <dict>.<key>.[key].
    return ".".join(str(part) for part in loc if part != "[key]")


def _described(model: type[BaseModel], loc: Loc) -> str | None:
    """The description of the setting at ``loc``, if the model gives one."""
    current: Any = model
    info: Any = None
    for part in loc:
        fields = getattr(current, "__pydantic_fields__", None) or getattr(
            current, "model_fields", None)
        if not isinstance(part, str) or not fields:
            return None
        info = fields.get(part) or next(
            (f for f in fields.values() if f.alias == part), None)
        if info is None:
            return None
        current = info.annotation
    return getattr(info, "description", None)


def _files_text(files: Sequence[str]) -> str:
    return " or ".join(files) if files else IN_CODE


def _explain(error: Mapping[str, Any], model: type[BaseModel], raw: Mapping[str, Any]) -> tuple[
        str, str, str]:
    """(key, file, sentence) of one pydantic error."""
    loc: Loc = tuple(error["loc"])
    key = _key(loc)
    sources = raw if isinstance(raw, ConfigData) else ConfigData()
    kind = error["type"]
    if kind == "missing":
        file = _files_text(sources.files)
        text = f"{key} is missing; set it" + (f" in {file}" if sources.files else "")
    else:
        file = sources.source_of(loc) or _files_text(sources.files)
        if kind in ("extra_forbidden", "unexpected_keyword_argument"):
            table = _key(loc[:-1])
            known = _known(model, loc[:-1])
            where = f"[{table}]" if table else "the top level"
            text = (f"{key} is not a setting ({where} knows {', '.join(known)}); remove it or "
                    "correct its name")
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            text = f"{key} should be a table ([{key}]), got {error.get('input')!r:.80}"
        elif kind in ("tuple_type", "list_type"):
            text = f"{key} should be an array ([...]), got {error.get('input')!r:.80}"
        else:
            expectation = str(error["msg"])
            if expectation.startswith("Input should"):
                expectation = expectation[len("Input "):]
            elif not expectation.startswith("should"):
                expectation = f"is wrong: {expectation}"
            text = f"{key} {expectation}, got {error.get('input')!r:.80}"
    description = _described(model, loc)
    if description:
        text += f" ({description})"
    return key, file, f"{file}: {text}"


def _known(model: type[BaseModel], loc: Loc) -> list[str]:
    current: Any = model
    for part in loc:
        fields = getattr(current, "__pydantic_fields__", None) or getattr(
            current, "model_fields", None) or {}
        info = fields.get(part) or next(
            (f for f in fields.values() if f.alias == part), None)
        if info is None:
            return []
        current = info.annotation
    fields = getattr(current, "__pydantic_fields__", None) or getattr(
        current, "model_fields", None) or {}
    return sorted(info.alias or name for name, info in fields.items())


def parse_adapter_config(
    raw: Mapping[str, Any], model: type[C], *, environ: Mapping[str, str] | None = None
) -> C:
    """``raw`` (a ``ConfigData`` names its files in errors) checked into ``model``. Every
    problem is reported at once, the first one's key in the error's ``field``. ``environ``
    stands for ``os.environ`` where the model reads variables while loading."""
    try:
        return model.model_validate(
            dict(raw), context={"environ": os.environ if environ is None else environ})
    except ValidationError as exc:
        explained = [_explain(e, model, raw) for e in exc.errors()]
        key, file, first = explained[0]
        rest = [text for _, _, text in explained[1:]]
        message = first + (f"; also {'; '.join(rest)}" if rest else "")
        raise AdapterConfigError(message, field=key, file=file) from None
    except SettingProblem as problem:
        sources = raw if isinstance(raw, ConfigData) else ConfigData()
        file = sources.source_of(problem.key.split(".")) or _files_text(sources.files)
        raise AdapterConfigError(f"{file}: {problem.key}: {problem.message}",
                                 field=problem.key, file=file) from None


def load_adapter_config(settings: Settings, name: str, model: type[C]) -> C:
    """The configuration of adapter ``name``: its shipped file with the deployment's overlay
    merged over it, checked into ``model``."""
    raw = read_adapter_config(Path(settings.mappings_dir), name, overlay_dir(settings))
    return parse_adapter_config(raw, model)


def environ_of(info: ValidationInfo) -> Mapping[str, str]:
    """The environment a model reads while loading (``parse_adapter_config(environ=...)``)."""
    context = info.context if isinstance(info.context, dict) else {}
    found = context.get("environ")
    return found if isinstance(found, Mapping) else os.environ


def secret(variable: str, key: str, what: str) -> str:
    """The secret held by the environment variable ``variable`` (named by the setting
    ``key``), read when it is needed so a rotated secret is taken without a restart."""
    value = os.environ.get(variable, "") if variable else ""
    if not value:
        raise ConfigError(
            f"the environment variable {variable or '(none)'} holding {what} is not set; "
            f"export it (a secret is never kept in a file; {key} names the variable)",
            field=key,
        )
    return value


def optional_secret(variable: str) -> str | None:
    """The value of ``variable`` (named by an ``*_env`` setting) where a secret may be absent
    (a token sent when set); None when the setting names no variable or it is unset or empty."""
    return os.environ.get(variable) or None if variable else None


def credentials(username_env: str, password_env: str) -> tuple[str, str]:
    """A login's username and password from the environment variables the settings
    ``username_env`` and ``password_env`` name, read when logging in, so a rotated password is
    taken without a restart."""
    user = os.environ.get(username_env, "")
    password = os.environ.get(password_env, "")
    missing = [name for name, value in ((username_env, user), (password_env, password))
               if not value]
    if missing:
        raise ConfigError(
            f"the login's credentials are not set: export {' and '.join(missing)} "
            "(their names are username_env / password_env in the config)",
            field=missing[0],
        )
    return user, password


# -- types of settings ----------------------------------------------------------------------------


def http_url(value: str) -> str:
    """``value`` as an http(s) URL without a trailing slash (a PydanticCustomError if not)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PydanticCustomError("http_url", "should be an http(s) URL such as "
                                  "'https://system.example.vn'")
    return value.rstrip("/")


def _url_path(value: str) -> str:
    if not value.startswith("/"):
        raise PydanticCustomError("url_path", "should be a path starting with '/'")
    return value


def _env_name(value: str) -> str:
    if value and not (value.replace("_", "A").isalnum() and value.isascii()
                      and not value[0].isdigit()):
        raise PydanticCustomError(
            "env_name", "should be the name of an environment variable (letters, digits and _)")
    return value


def _nonblank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("nonblank", "should be a non-empty string")
    return value.strip()


def _anchor(value: str) -> str:
    if not _ANCHOR_RE.match(value):
        raise PydanticCustomError("anchor", "should be a province letter code like 'H56'")
    return value


_ANCHOR_RE = re.compile(r"^[A-Z]\d{2}$", re.ASCII)


HttpUrl = Annotated[str, AfterValidator(http_url)]
"""An http(s) URL, kept without a trailing slash."""
UrlPath = Annotated[str, AfterValidator(_url_path)]
NonBlank = Annotated[str, AfterValidator(_nonblank)]
OptionalEnvName = Annotated[str, AfterValidator(_env_name)]
"""The name of an environment variable, or empty: none."""
EnvName = Annotated[str, AfterValidator(_env_name), AfterValidator(_nonblank)]
# The letter code of a province or ministry (the anchor of its agency codes): "H56", "G22".
Anchor = Annotated[str, AfterValidator(_anchor)]
# A TOML array is a list; kept as a tuple (the model is read-only). Items stay strict.
Texts = Annotated[tuple[Annotated[str, Strict()], ...], Field(strict=False)]


class Section(BaseModel):
    """A table of an adapter's configuration: typed strictly (TOML has types: ``"5"`` is not a
    number, ``1`` is not true), unknown keys refused, read-only."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class CallPolicySection(Section):
    """The ``[policy]`` table every adapter has, checked into ``hub.outbound.PolicyConfig``."""

    timeout: Annotated[float, Field(gt=0, description="seconds one call may take")] = 10.0
    attempts: Annotated[int, Field(ge=1, description="tries in-process before the retry "
                                                      "tiers")] = 3
    backoff_initial: Annotated[float, Field(ge=0, description="seconds")] = 0.2
    backoff_max: Annotated[float, Field(ge=0, description="seconds")] = 2.0
    breaker_failures: Annotated[int, Field(ge=1, description="consecutive failures that "
                                                              "open the breaker")] = 5
    breaker_reset: Annotated[float, Field(ge=0, description="seconds the breaker stays "
                                                             "open")] = 30.0
    rate_per_second: Annotated[float, Field(ge=0, description="calls per second at most; "
                                                               "0 for no limit")] = 0.0
    burst: Annotated[int, Field(ge=1, description="calls let through at once by the rate "
                                                   "limit")] = 10

    def config(self) -> PolicyConfig:
        return PolicyConfig(**self.model_dump())


class AdapterConfig(Section):
    """Base of every adapter's configuration: the call policy, and the ways to load it."""

    policy_table: Annotated[CallPolicySection, Field(alias="policy")] = CallPolicySection()

    @cached_property
    def policy(self) -> PolicyConfig:
        """The ``[policy]`` table as ``hub.outbound.CallPolicy`` takes it."""
        return self.policy_table.config()

    @classmethod
    def from_mapping(
        cls, raw: Mapping[str, Any], *, environ: Mapping[str, str] | None = None
    ) -> Self:
        """``raw`` checked (``ctx.config``, or a test's dict)."""
        return parse_adapter_config(raw, cls, environ=environ)

    @classmethod
    def from_context(cls, ctx: AdapterContext) -> Self:
        """The configuration the core read for this adapter (``AdapterContext.config``)."""
        return parse_adapter_config(ctx.config, cls)

    @classmethod
    def shipped_or_context(cls, ctx: AdapterContext, name: str) -> Self:
        """The configuration the core read for adapter ``name`` or, in a context built without
        one (a test's, a tool's), the shipped ``mappings/<name>/config.toml``."""
        return cls.from_mapping(ctx.config or read_adapter_config(ctx.settings.mappings_dir, name))
