"""The body schemas of the served OpenAPI document are the contract files themselves.

The REST API's contracts are the JSON Schemas in ``schemas/api/``, written first. OpenAPI 3.1
speaks the same dialect (JSON Schema 2020-12), so the document serves the files rather than a
restatement by pydantic models, which drifted from them (patterns and formats differed). The
routes name their bodies by file (``contract_ref("status-change")`` is a reference to
``status-change.schema.json``) and ``serve_contracts`` puts each file into the components under
its ``title``, each of its ``$defs`` under the definition's name (a definition several files
repeat, identically, is one component), and points every reference into the components.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.api.problems import PROBLEM_JSON
from hub.errors import ConfigError

SUFFIX = ".schema.json"
COMPONENTS = "#/components/schemas/"


def contract_ref(name: str, definition: str | None = None) -> dict[str, str]:
    """A reference to ``schemas/api/<name>.schema.json``, or to one of its ``$defs``, resolved
    by ``serve_contracts``."""
    ref = name + SUFFIX
    return {"$ref": ref if definition is None else f"{ref}#/$defs/{definition}"}


def json_body(name: str, media_type: str = "application/json") -> dict[str, Any]:
    """The ``content`` of a request or response whose body is the contract ``name``."""
    return {"content": {media_type: {"schema": contract_ref(name)}}}


def problem(description: str, headers: dict[str, str] | None = None, *,
            optional: dict[str, str] | None = None) -> dict[str, Any]:
    """A refusal's response: a problem body, the headers it always carries and those only
    some of its codes carry (``optional``), each as name -> what it says."""
    response: dict[str, Any] = {"description": description, **json_body("problem", PROBLEM_JSON)}
    described = {name: (text, True) for name, text in (headers or {}).items()}
    described.update((name, (text, False)) for name, text in (optional or {}).items())
    if described:
        response["headers"] = {name: {"description": text, "required": required,
                                      "schema": {"type": "string"}}
                               for name, (text, required) in described.items()}
    return response


# An unknown path is answered 404, a method a path does not take 405 with Allow (RFC 9110
# section 15.5.6), both as problems; an operation lists them where a request can get them.
NOT_FOUND = problem("no such path, or the path names nothing the hub knows, such as a "
                    "callback system without an adapter (client.not_found, "
                    "client.unknown_system)")
METHOD_NOT_ALLOWED = problem("the path does not take this method "
                             "(client.method_not_allowed); Allow lists the methods it takes",
                             {"Allow": "the methods this path takes"})

# A process at its cap of requests in flight (hub.api.limits.InFlightLimit) refuses any
# request but the probes' and the metrics' with this; a 503 of a route adds its own codes.
BUSY_CODE = "server.busy: the process has as many requests in hand as it takes, send again " \
    "after Retry-After"
RETRY_AFTER_BUSY = {"Retry-After": "whole seconds to wait before sending again (server.busy)"}
BUSY = problem(f"overloaded ({BUSY_CODE})", optional=RETRY_AFTER_BUSY)

# Refusals of the connection's limits (hub.api.protocol, hub.api.limits), whatever the route;
# the connection is closed after them.
CONNECTION_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: problem("bytes that are not an HTTP/1.1 request (client.malformed_request)"),
    408: problem("the request did not arrive in time (client.request_timeout)"),
    431: problem("the request's headers are too large or too many "
                 "(client.headers_too_large)"),
}

# The refusals every authenticated route may answer with.
PROBLEMS: dict[int | str, dict[str, Any]] = {
    **CONNECTION_PROBLEMS,
    400: problem("malformed request: unreadable JSON, a missing or bad signature, bytes that "
                 "are not HTTP (client.unparseable, client.missing_signature, "
                 "client.bad_signature, client.malformed_request, ...)"),
    401: problem("no or unknown credentials (client.unauthenticated)"),
    403: problem("not allowed by the client's access list (client.access_denied)"),
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    409: problem("Idempotency-Key reused for another body (client.idempotency_conflict)"),
    413: problem("body too large (client.body_too_large)"),
    422: problem("the body, a header or a code does not match its contract; field names it"),
    429: problem("too many requests from this client (client.rate_limited)",
                 {"Retry-After": "whole seconds to wait before the next request"}),
    503: problem("the hub cannot keep the message now (server.timeout, "
                 f"server.store_unavailable; {BUSY_CODE})", optional=RETRY_AFTER_BUSY),
}


@dataclass(frozen=True)
class _Contract:
    filename: str
    schema: dict[str, Any]

    @property
    def title(self) -> str:
        return str(self.schema["title"])

    @property
    def defs(self) -> dict[str, Any]:
        return dict(self.schema.get("$defs", {}))


def _load(directory: Path) -> list[_Contract]:
    contracts = []
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path} cannot be read as JSON: {exc}; fix the contract file",
                              field=str(path)) from None
        if not isinstance(schema, dict) or not isinstance(schema.get("title"), str):
            raise ConfigError(f"{path} has no title, which names its OpenAPI component; add "
                              "one", field=str(path))
        contracts.append(_Contract(path.name, schema))
    if not contracts:
        raise ConfigError(f"no *{SUFFIX} files in {directory}; the API contracts are missing",
                          field=str(directory))
    return contracts


def _check_names(contracts: list[_Contract]) -> None:
    """Refuse two different schemas under one component name (a definition repeated by
    several files must say the same thing in each)."""
    owner: dict[str, tuple[str, Any]] = {}

    def claim(name: str, where: str, schema: Any) -> None:
        if name in owner and owner[name][1] != schema:
            raise ConfigError(
                f"{where} and {owner[name][0]} both define {name!r}, differently; make them "
                "identical or rename one (each becomes the OpenAPI component of that name)",
                field=where)
        owner.setdefault(name, (where, schema))

    for c in contracts:
        claim(c.title, c.filename, c.schema)
    for c in contracts:
        for name, schema in c.defs.items():
            claim(name, f"{c.filename}#/$defs/{name}", schema)


def contract_components(directory: Path) -> dict[str, dict[str, Any]]:
    """Every contract of ``directory`` and its definitions, as OpenAPI components."""
    return _components(_load(directory))


def _components(contracts: list[_Contract]) -> dict[str, dict[str, Any]]:
    _check_names(contracts)
    by_file = {c.filename: c for c in contracts}
    by_id = {c.schema["$id"]: c for c in contracts if "$id" in c.schema}
    components: dict[str, dict[str, Any]] = {}
    for c in contracts:
        rewrite = _ref_rewriter(c, by_file, by_id)
        served = {k: v for k, v in c.schema.items() if k not in ("$schema", "$id", "$defs")}
        components[c.title] = _rewrite(served, rewrite)
        for name, schema in c.defs.items():
            components[name] = _rewrite(schema, rewrite)
    return components


def serve_contracts(doc: dict[str, Any], directory: Path) -> None:
    """Resolve the ``contract_ref``s of ``doc`` and add the contracts to its components."""
    contracts = _load(directory)
    by_file = {c.filename: c for c in contracts}

    def to_component(ref: str) -> str:
        if ref.startswith("#/"):
            return ref
        filename, _, fragment = ref.partition("#")
        target = by_file.get(filename)
        if target is None:
            raise ConfigError(f"the OpenAPI document refers to {ref!r}, which is not a "
                              f"contract file of {directory}", field=ref)
        if not fragment:
            return COMPONENTS + target.title
        name = fragment.removeprefix("/$defs/")
        if not fragment.startswith("/$defs/") or name not in target.defs:
            raise ConfigError(f"the OpenAPI document refers to {ref!r}; {filename} has no "
                              f"such definition (its $defs: {', '.join(target.defs)})",
                              field=ref)
        return COMPONENTS + name

    doc["paths"] = _rewrite(doc.get("paths", {}), to_component)
    doc.setdefault("components", {}).setdefault("schemas", {}).update(_components(contracts))


def _ref_rewriter(contract: _Contract, by_file: dict[str, _Contract],
                  by_id: dict[str, _Contract]) -> Callable[[str], str]:
    """Turn a reference inside ``contract`` (to itself, one of its ``$defs``, or another file
    by file name or ``$id``) into a reference to a component."""

    def rewrite(ref: str) -> str:
        base, _, fragment = ref.partition("#")
        target = contract if base == "" else by_file.get(base) or by_id.get(base)
        if target is None:
            raise ConfigError(f"{contract.filename} refers to {ref!r}, which is neither one "
                              "of its $defs nor another contract file", field=contract.filename)
        if fragment == "":
            return COMPONENTS + target.title
        name = fragment.removeprefix("/$defs/")
        if not fragment.startswith("/$defs/") or name not in target.defs:
            raise ConfigError(f"{contract.filename} refers to {ref!r}; only whole files and "
                              "their $defs can be served as components", field=contract.filename)
        return COMPONENTS + name

    return rewrite


def _rewrite(node: Any, rewrite: Callable[[str], str]) -> Any:
    """A copy of ``node`` with every ``$ref`` passed through ``rewrite``."""
    if isinstance(node, dict):
        return {k: rewrite(v) if k == "$ref" and isinstance(v, str) else _rewrite(v, rewrite)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v, rewrite) for v in node]
    return node
