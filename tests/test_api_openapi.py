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
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_api_requests import (
    PAYMENT,
    POSTAL,
    VERIFICATION,
    payment,
    postal_order,
    requests_registry,
    verification,
)
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
    ("/v1/dossiers/{code}/payments", "post"): "payment-request.schema.json",
    ("/v1/dossiers/{code}/postal-orders", "post"): "postal-order.schema.json",
    ("/v1/citizens/verifications", "post"): "citizen-verification.schema.json",
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
    # A client that may send every type the REST API takes, so that generated requests get
    # past the access list to validation and the store.
    return make_hub(registry=requests_registry())


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
    jsonschema.validate(payment(), contract("payment-request.schema.json"))
    jsonschema.validate(postal_order(), contract("postal-order.schema.json"))
    jsonschema.validate(verification(dossier_code="000.00.00.H56-250101-0001"),
                        contract("citizen-verification.schema.json"))


def test_contract_files_refuse_what_the_hub_refuses() -> None:
    refused = [
        ("payment-request.schema.json", payment(amount=0)),
        ("payment-request.schema.json", payment(reference="")),
        ("postal-order.schema.json", postal_order(direction="sideways")),
        ("citizen-verification.schema.json", verification(identity_number="0010990123")),
        ("citizen-verification.schema.json", {"identity_number": "001099012345"}),
    ]
    for filename, value in refused:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(value, contract(filename))


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
            start = datetime(2000, 1, 1)
            # Naive (Vietnam time by convention) or with an offset.
            return (st.datetimes(min_value=start)
                    | st.datetimes(min_value=start, timezones=st.just(UTC))
                    ).map(datetime.isoformat)
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
               "/v1/dossiers/{code}/progress": PROGRESS,
               "/v1/dossiers/{code}/payments": PAYMENT,
               "/v1/dossiers/{code}/postal-orders": POSTAL,
               "/v1/citizens/verifications": VERIFICATION}
valid_codes = st.builds(lambda day, n: f"000.00.00.H56-{day:%y%m%d}-{n:04d}",
                        st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)),
                        st.integers(1, 9999))
# Valid bodies, drawn now and then so that the property run also reaches the store.
VALID_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "/v1/dossiers": lambda: dossier(
        f"000.00.00.H56-250101-{uuid.uuid4().int % 9000 + 1:04d}"),
    "/v1/dossiers/{code}/payments": payment,
    "/v1/dossiers/{code}/postal-orders": postal_order,
    "/v1/citizens/verifications": verification,
}


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_request_makes_the_hub_fail(hub: Hub, data: st.DataObject) -> None:
    doc = hub.app.openapi()
    operations = sorted((path, method) for path, item in doc["paths"].items()
                        for method in item)
    path, method = data.draw(st.sampled_from(operations), label="operation")
    operation = doc["paths"][path][method]
    code = data.draw(valid_codes
                     | st.from_regex(r"000\.00\.00\.H56-25\d{4}-\d{4}", fullmatch=True)
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
        if path in VALID_BODIES and data.draw(st.booleans(), label="valid body"):
            value = VALID_BODIES[path]()
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
    # Seen with --hypothesis-show-statistics: how far the requests of each operation got.
    event(f"{method.upper()} {path} -> {answer.status_code}")
    assert answer.status_code < 500 or (answer.status_code == 503 and path == "/readyz"), \
        (answer.status_code, answer.text)
    if answer.status_code >= 400 and path != "/readyz":
        problem = answer.json()
        assert problem["code"] and problem["origin"] == "hub" and problem["message"]


def test_hypothesis_sees_every_operation(hub: Hub, tmp_path: Path) -> None:
    doc = hub.http.get("/openapi.json").json()
    paths = set(doc["paths"])
    assert {"/v1/dossiers", "/v1/dossiers/{code}/status", "/v1/dossiers/{code}/progress",
            "/v1/dossiers/{code}/payments", "/v1/dossiers/{code}/postal-orders",
            "/v1/citizens/verifications", "/v1/dossiers/{code}/timeline", "/v1/oauth/token",
            "/v1/callbacks/{system}", "/healthz", "/readyz", "/metrics"} <= paths
    # Every operation with a JSON body is signed for its own event type by the property run.
    signed = {path for path, item in doc["paths"].items() for operation in item.values()
              if "application/json" in operation.get("requestBody", {}).get("content", {})}
    assert signed == set(EVENT_TYPES)
