"""A SOAP system's faults -> the hub's error classes, by the system's own table
(``mappings/<name>/faults.toml``): the system's error code carried in the fault's detail first,
else the SOAP 1.1 faultcode class (``Client``, ``Server``, ``other``).

Fault strings and details are the system's words and may echo the request: they are scrubbed
(identity numbers masked) before they reach an error message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lxml import etree

from hub import tomlmap
from hub.errors import ConfigError, HubError, PermanentError, RetryableError
from hub.privacy import scrub
from hub.transport.base import MAX_SAID, Reply, origin_of
from hub.transport.soap import Fault

FILE = "faults.toml"
Kind = Literal["retryable", "permanent"]
_DETAIL_KEYS = ("namespace", "element", "code", "text")


@dataclass(frozen=True, slots=True)
class Rule:
    kind: Kind
    code: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class FaultTable:
    system: str  # errors carry origin "system:<system>"
    title: str  # names the system in messages: "the population database"
    detail: dict[str, str]  # where the detail holds the system's error: namespace, element...
    codes: dict[str, Rule]  # the system's error code -> rule
    faultcodes: dict[str, Rule]  # "Client" / "Server" / "other" -> rule

    def for_fault(self, faultcode: str | None, detail: Any, faultstring: str | None) -> HubError:
        """The error for a SOAP fault: by the system's code, else by the faultcode class."""
        system_code, description = self._said(detail)
        rule = self.codes.get(system_code) if system_code else None
        if rule is None:
            # "soap:Client" -> "Client"; SOAP 1.1 also allows dotted refinements "Client.Auth".
            local = (faultcode or "").rpartition(":")[2].split(".")[0]
            rule = self.faultcodes.get(local) or self.faultcodes["other"]
        said = scrub((description or faultstring or "no description")[:MAX_SAID])
        message = (
            f"{self.title} answered with fault {faultcode or '?'}"
            f"{f' / {system_code}' if system_code else ''}: {said}"
        )
        if rule.reason:
            message += f" ({rule.reason})"
        cls = RetryableError if rule.kind == "retryable" else PermanentError
        return cls(message, code=rule.code, origin=origin_of(self.system),
                   field=self.detail["code"] if system_code else "faultcode")

    def result(self, reply: Reply) -> Any:
        """``Outbound.call``'s reading of a SOAP reply: its result, or its fault's error."""
        if isinstance(reply.body, Fault):
            fault = reply.body
            raise self.for_fault(fault.code, fault.detail, fault.message)
        return reply.body

    def _said(self, detail: Any) -> tuple[str | None, str | None]:
        """The system's error code and description from a fault's detail, if it holds them."""
        if not isinstance(detail, etree._Element):
            return None, None
        ns, element = self.detail["namespace"], self.detail["element"]
        found = (detail if etree.QName(detail).localname == element
                 else detail.find(f"{{{ns}}}{element}"))
        if found is None:
            return None, None
        code = found.findtext(f"{{{ns}}}{self.detail['code']}")
        return (code.strip() if code else None), found.findtext(f"{{{ns}}}{self.detail['text']}")


def load_faults(directory: Path) -> FaultTable:
    """``<directory>/faults.toml``, checked."""
    return parse_faults(tomlmap.read(directory / FILE))


def parse_faults(raw: dict[str, Any]) -> FaultTable:
    codes = {str(k): _rule(v, f"[codes.{k}]") for k, v in _section(raw, "codes").items()}
    faultcodes = {str(k): _rule(v, f"[faultcode.{k}]")
                  for k, v in _section(raw, "faultcode").items()}
    if "other" not in faultcodes:
        raise ConfigError("needs an 'other' entry for faultcodes outside Client and Server",
                          field=f"{FILE} [faultcode]")
    detail = tomlmap.wire_names(tomlmap.table(raw, "detail", FILE), _DETAIL_KEYS,
                                f"{FILE} [detail]")
    system, title = (tomlmap.string(raw, key, FILE) for key in ("system", "title"))
    return FaultTable(system=system, title=title, detail=detail, codes=codes,
                      faultcodes=faultcodes)


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
