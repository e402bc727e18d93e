"""The population database's SOAP faults -> the hub's error classes, driven by
``mappings/population/faults.toml``. Its HTTP answers that are not SOAP are translated as every
system's are (``hub.transport``).

Fault strings and details are the system's words and may echo the request; they are scrubbed
(identity numbers masked) before they reach an error message.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lxml import etree

from hub.errors import ConfigError, HubError, PermanentError, RetryableError
from hub.privacy import scrub

FILE = "faults.toml"
NS = "http://dancuquocgia.bca"
ORIGIN = "system:population"
_MAX_TEXT = 300

Kind = Literal["retryable", "permanent"]


@dataclass(frozen=True, slots=True)
class Rule:
    kind: Kind
    code: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class FaultTable:
    codes: dict[str, Rule]  # MaLoi -> rule
    faultcodes: dict[str, Rule]  # "Client" / "Server" / "other" -> rule

    def for_fault(self, faultcode: str | None, detail: Any, faultstring: str | None) -> HubError:
        """The error for a SOAP fault: by the system's MaLoi, else by the faultcode class."""
        system_code, description = _loi(detail)
        rule = self.codes.get(system_code) if system_code else None
        if rule is None:
            # "soap:Client" -> "Client"; SOAP 1.1 also allows dotted refinements "Client.Auth".
            local = (faultcode or "").rpartition(":")[2].split(".")[0]
            rule = self.faultcodes.get(local) or self.faultcodes["other"]
        said = scrub((description or faultstring or "no description")[:_MAX_TEXT])
        message = (
            f"the population database answered with fault {faultcode or '?'}"
            f"{f' / {system_code}' if system_code else ''}: {said}"
        )
        if rule.reason:
            message += f" ({rule.reason})"
        return _error(rule, message, field="MaLoi" if system_code else "faultcode")


def _error(rule: Rule, message: str, field: str) -> HubError:
    cls = RetryableError if rule.kind == "retryable" else PermanentError
    return cls(message, code=rule.code, field=field, origin=ORIGIN)


def _loi(detail: Any) -> tuple[str | None, str | None]:
    """MaLoi and MoTaLoi from a fault's <detail><Loi>, if there is one."""
    if not isinstance(detail, etree._Element):
        return None, None
    loi = detail if etree.QName(detail).localname == "Loi" else detail.find(f"{{{NS}}}Loi")
    if loi is None:
        return None, None
    code = loi.findtext(f"{{{NS}}}MaLoi")
    text = loi.findtext(f"{{{NS}}}MoTaLoi")
    return (code.strip() if code else None), text


def load_faults(directory: Path) -> FaultTable:
    path = directory / FILE
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist; the population adapter needs it",
                          field=FILE) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", field=FILE) from None
    return parse_faults(raw)


def parse_faults(raw: dict[str, Any]) -> FaultTable:
    codes = {str(k): _rule(v, f"[codes.{k}]") for k, v in _section(raw, "codes").items()}
    faultcodes = {str(k): _rule(v, f"[faultcode.{k}]")
                  for k, v in _section(raw, "faultcode").items()}
    if "other" not in faultcodes:
        raise ConfigError("needs an 'other' entry for faultcodes outside Client and Server",
                          field=f"{FILE} [faultcode]")
    return FaultTable(codes=codes, faultcodes=faultcodes)


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError("must be a table", field=f"{FILE} [{name}]")
    return value


def _rule(value: Any, where: str) -> Rule:
    if not isinstance(value, dict):
        raise ConfigError("must be a table with kind and code", field=f"{FILE} {where}")
    unknown = sorted(set(value) - {"kind", "code", "reason"})
    if unknown:
        raise ConfigError(f"unknown keys {unknown}; known: kind, code, reason",
                          field=f"{FILE} {where}")
    kind = value.get("kind")
    if kind not in ("retryable", "permanent"):
        raise ConfigError(f"kind must be 'retryable' or 'permanent', got {kind!r}",
                          field=f"{FILE} {where}.kind")
    code = value.get("code")
    if not isinstance(code, str) or not code.startswith("system."):
        raise ConfigError(f"code must be a dotted 'system.*' code, got {code!r}",
                          field=f"{FILE} {where}.code")
    reason = value.get("reason", "")
    if not isinstance(reason, str):
        raise ConfigError("reason must be a string", field=f"{FILE} {where}.reason")
    return Rule(kind=kind, code=code, reason=reason)
