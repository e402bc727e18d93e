"""The served OpenAPI document against the contract files in schemas/api/, and a property-based
run over every served operation: whatever the request, never a 5xx."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_api_support import (  # noqa: F401 - fixtures
    API_KEY,
    PROGRESS,
    STATUS,
    SUBMITTED,
    Hub,
    dossier,
    keys_fixture,
    make_hub_fixture,
    sign,
)

from hub.settings import PROJECT_ROOT

SCHEMAS = PROJECT_ROOT / "schemas" / "api"
REQUESTS = {
    ("/v1/dossiers", "post"): "dossier-submission.schema.json",
    ("/v1/dossiers/{code}/status", "post"): "status-change.schema.json",
    ("/v1/dossiers/{code}/progress", "post"): "progress-step.schema.json",
}
RESPONSES = {
    "Accepted": "accepted.schema.json",
    "Problem": "problem.schema.json",
    "Timeline": "timeline.schema.json",
    "TokenResponse": "token.schema.json",
    "CallbackAccepted": "callback-accepted.schema.json",
}


@pytest.fixture
def hub(make_hub: Callable[..., Hub]) -> Hub:
    return make_hub()


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _object_of(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema a property holds, directly, through a $ref, an anyOf or an array."""
    schema = _resolve(schema, root)
    for option in schema.get("anyOf", []):
        found = _object_of(option, root)
        if found is not None:
            return found
    if schema.get("type") == "array" and "items" in schema:
        return _object_of(schema["items"], root)
    return schema if "properties" in schema else None


def shape(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Required fields and property names, recursively into nested objects."""
    schema = _resolve(schema, root)
    nested = {}
    for name, prop in schema.get("properties", {}).items():
        inner = _object_of(prop, root)
        nested[name] = shape(inner, root) if inner is not None else None
    return {"required": sorted(schema.get("required", [])), "properties": nested}


def contract(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return doc


def test_request_schemas_agree_with_the_contract_files(hub: Hub) -> None:
    doc = hub.http.get("/openapi.json").json()
    for (path, method), filename in REQUESTS.items():
        operation = doc["paths"][path][method]
        served = operation["requestBody"]["content"]["application/json"]["schema"]
        assert shape(served, doc) == shape(contract(filename), contract(filename)), filename
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert {"X-Signature", "Idempotency-Key"} <= headers


def test_response_schemas_agree_with_the_contract_files(hub: Hub) -> None:
    doc = hub.http.get("/openapi.json").json()
    for component, filename in RESPONSES.items():
        served = doc["components"]["schemas"][component]
        assert shape(served, doc) == shape(contract(filename), contract(filename)), filename
    assert set(doc["components"]["securitySchemes"]) == {"apiKey", "oauth2",
                                                         "clientCertificate"}


def test_contract_files_accept_what_the_hub_accepts(hub: Hub) -> None:
    jsonschema.validate(dossier("000.00.00.H56-250101-0001"),
                        contract("dossier-submission.schema.json"))
    jsonschema.validate({"status": 2, "at": "2025-01-01T08:00:00"},
                        contract("status-change.schema.json"))


# -- property-based: no request makes the hub fail ----------------------------------------------

def from_schema(schema: dict[str, Any], root: dict[str, Any], depth: int = 0) -> Any:
    """Mostly-valid values of a JSON Schema (enough to get past the first field)."""
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        return st.one_of([from_schema(s, root, depth + 1) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": k}, root, depth) for k in kind])
    if kind == "object" and depth < 4:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v, root, depth + 1) for k, v in props.items() if k in required},
            optional={k: from_schema(v, root, depth + 1) for k, v in props.items()
                      if k not in required})
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), root, depth + 1), max_size=2)
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        if schema.get("format") == "date-time":
            return st.datetimes(min_value=datetime(2000, 1, 1),
                                timezones=st.just(UTC) | st.none()).map(datetime.isoformat)
        if schema.get("format") == "date":
            return st.dates(min_value=date(1900, 1, 1)).map(date.isoformat)
        return st.text(max_size=30)
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum", -5), max_value=20)
    if kind == "number":
        return st.integers(-10, 10**9) | st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return json_values


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner,
                                                                  max_size=3),
    max_leaves=8,
)
EVENT_TYPES = {"/v1/dossiers": SUBMITTED, "/v1/dossiers/{code}/status": STATUS,
               "/v1/dossiers/{code}/progress": PROGRESS}


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_request_makes_the_hub_fail(hub: Hub, data: st.DataObject) -> None:
    doc = hub.app.openapi()
    operations = sorted((path, method) for path, item in doc["paths"].items()
                        for method in item)
    path, method = data.draw(st.sampled_from(operations), label="operation")
    operation = doc["paths"][path][method]
    code = data.draw(st.from_regex(r"000\.00\.00\.H56-25\d{4}-\d{4}", fullmatch=True)
                     | st.text(min_size=1, max_size=30).filter(lambda s: s not in (".", "..")),
                     label="code")
    system = data.draw(st.text(min_size=1, max_size=10).filter(lambda s: s not in (".", "..")),
                       label="system")
    url = path.replace("{code}", quote(code, safe="")).replace("{system}",
                                                                quote(system, safe=""))
    headers = {"X-API-Key": API_KEY} if data.draw(st.booleans(), label="auth") else {}
    content = b""
    schema = (operation.get("requestBody", {}).get("content", {})
              .get("application/json", {}).get("schema"))
    if schema is not None:
        value = data.draw(from_schema(schema, doc) | json_values, label="body")
        if path == "/v1/dossiers" and data.draw(st.booleans(), label="fresh dossier"):
            value = dossier(f"000.00.00.H56-250101-{uuid.uuid4().int % 9000 + 1:04d}")
        content = json.dumps(value, ensure_ascii=False).encode()
        if data.draw(st.booleans(), label="signed"):
            headers["X-Signature"] = sign(hub.client_signer, content, EVENT_TYPES[path])
        if data.draw(st.booleans(), label="idempotency key"):
            headers["Idempotency-Key"] = data.draw(st.text(max_size=20), label="key")
        headers["Content-Type"] = "application/json"
    elif method == "post":
        content = data.draw(st.binary(max_size=200), label="raw body")
    try:
        answer = hub.http.request(method.upper(), url, content=content or None,
                                  headers=headers)
    except UnicodeEncodeError:
        return  # a header value that HTTP cannot carry never reaches the hub
    assert answer.status_code < 500 or (answer.status_code == 503 and path == "/readyz"), \
        (answer.status_code, answer.text)
    if answer.status_code >= 400 and path != "/readyz":
        problem = answer.json()
        assert problem["code"] and problem["origin"] == "hub" and problem["message"]


def test_hypothesis_sees_every_operation(hub: Hub, tmp_path: Path) -> None:
    doc = hub.http.get("/openapi.json").json()
    paths = set(doc["paths"])
    assert {"/v1/dossiers", "/v1/dossiers/{code}/status", "/v1/dossiers/{code}/progress",
            "/v1/dossiers/{code}/timeline", "/v1/oauth/token", "/v1/callbacks/{system}",
            "/healthz", "/readyz", "/metrics"} <= paths
