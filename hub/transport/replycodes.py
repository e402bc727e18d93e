"""A JSON system's reply codes, read by a mapping file (``mappings/<name>/errors.toml``): each
code's ``kind`` (what the hub does about it) and the system's usual wording, kept for
operators; a code the file does not list is of its ``unknown`` kind. Codes are compared as
integers: ``0``, ``"0"`` and ``"00"`` are one code."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub import tomlmap
from hub.errors import ConfigError, RetryableError
from hub.transport.base import Reply, Said, bad_reply, origin_of

# The kinds every system's file may use; an adapter adds those its protocol acts on.
KINDS = frozenset({"ok", "retryable", "permanent"})


@dataclass(frozen=True, slots=True)
class CodeRule:
    kind: str
    message: str


@dataclass(frozen=True)
class ReplyCodes:
    system: str  # the system's short name (origin, metrics)
    title: str  # how messages name it: "the portal"
    code_key: str  # the reply's field holding the code, and the one holding its message
    message_key: str
    rules: dict[str, CodeRule]
    unknown: str

    @classmethod
    def parse(cls, doc: dict[str, Any], where: str, *, system: str, title: str, code_key: str,
              message_key: str, kinds: frozenset[str] = frozenset()) -> ReplyCodes:
        unknown = doc.get("unknown", "permanent")
        if unknown not in ("retryable", "permanent"):
            raise ConfigError(
                f"must be 'retryable' or 'permanent', got {unknown!r}", field=f"{where} unknown"
            )
        known = KINDS | kinds
        rules: dict[str, CodeRule] = {}
        for code, rule in tomlmap.table(doc, "codes", where).items():
            at = f"{where} [codes.\"{code}\"]"
            if not isinstance(rule, dict) or rule.get("kind") not in known:
                raise ConfigError(f"needs kind = one of {sorted(known)}", field=f"{at}.kind")
            rules[str(code)] = CodeRule(str(rule["kind"]), str(rule.get("message", "")))
        if not any(r.kind == "ok" for r in rules.values()):
            raise ConfigError("no code has kind = 'ok'; which one means success?", field=where)
        return cls(system, title, code_key, message_key, rules, str(unknown))

    def code_of(self, doc: dict[str, Any]) -> str | None:
        value = doc.get(self.code_key)
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str):
            try:
                return str(int(value.strip()))
            except ValueError:
                return None
        return None

    def rule(self, doc: dict[str, Any]) -> CodeRule:
        code = self.code_of(doc) or ""
        return self.rules.get(code) or CodeRule(
            self.unknown, f"{self.code_key} {code} is not listed in mappings/{self.system}/"
            "errors.toml")

    def describe(self, doc: dict[str, Any], rule: CodeRule, what: str) -> str:
        said = doc.get(self.message_key) or rule.message
        return (f"{self.title} answered {what} with {self.code_key} {self.code_of(doc)} "
                f"({rule.kind}): {said}")

    def explain(self, doc: dict[str, Any]) -> Said:
        """What an error reply says (the transport's ``explain``)."""
        return Said(f"{self.code_key} {self.code_of(doc)}: {doc.get(self.message_key, '')}")

    def reader(self, what: str) -> Callable[[Reply], dict[str, Any]]:
        """The reading of a reply to ``what`` (``Outbound.call``): one without its code is
        ``system.bad_reply``, a code of kind ``retryable`` a RetryableError (the call policy
        retries it), anything else the reply's body, for the protocol to read."""

        def read(reply: Reply) -> dict[str, Any]:
            doc: dict[str, Any] = reply.body
            if self.code_of(doc) is None:
                raise bad_reply(self.system, self.title, what, f"has no {self.code_key!r}")
            rule = self.rule(doc)
            if rule.kind == "retryable":
                raise RetryableError(self.describe(doc, rule, what), code="system.unavailable",
                                     origin=origin_of(self.system))
            return doc

        return read
