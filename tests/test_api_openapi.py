"""The served OpenAPI document against the contract files in schemas/api/ (it serves them), the
hub's own validation against the same files, and a property-based run over every served
operation: whatever the request, never a 5xx."""

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

from hub.api.limits import NOT_CAPPED
from hub.api.openapi import COMPONENTS, contract_components, serve_contracts
from hub.errors import ConfigError, HubError
from hub.model import parse_event_data
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


def expanded(schema: Any, root: dict[str, Any]) -> Any:
    """``schema`` with every ``$ref`` replaced by the schema it points to, recursively (the
    contracts are not recursive): two documents then compare by all they say, types,
    patterns, enums, formats, bounds, required, additionalProperties and descriptions, however
    each arranges its definitions."""
    if isinstance(schema, dict):
        return {k: expanded(_resolve({"$ref": v}, root), root) if k == "$ref"
                else expanded(v, root) for k, v in schema.items()}
    if isinstance(schema, list):
        return [expanded(v, root) for v in schema]
    return schema


def contract(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return doc


def served_form(filename: str) -> Any:
    """What the contract file says, definitions inlined, without the keywords that only
    locate it ($schema, $id, $defs)."""
    doc = contract(filename)
    return expanded({k: v for k, v in doc.items() if k not in ("$schema", "$id", "$defs")}, doc)


def test_request_schemas_agree_with_the_contract_files(hub: Hub) -> None:
    doc = hub.http.get("/openapi.json").json()
    for (path, method), filename in REQUESTS.items():
        operation = doc["paths"][path][method]
        served = operation["requestBody"]["content"]["application/json"]["schema"]
        assert served == {"$ref": COMPONENTS + contract(filename)["title"]}, filename
        assert expanded(_resolve(served, doc), doc) == served_form(filename), filename
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert {"X-Signature", "Idempotency-Key"} <= headers


def test_response_schemas_agree_with_the_contract_files(hub: Hub) -> None:
    doc = hub.http.get("/openapi.json").json()
    for component, filename in RESPONSES.items():
        served = doc["components"]["schemas"][component]
        assert expanded(served, doc) == served_form(filename), filename
    answers = {("/v1/dossiers", "post", "202"): "Accepted",
               ("/v1/dossiers/{code}/timeline", "get", "200"): "Timeline",
               ("/v1/oauth/token", "post", "200"): "TokenResponse",
               ("/v1/callbacks/{system}", "post", "202"): "CallbackAccepted"}
    for (path, method, status), component in answers.items():
        content = doc["paths"][path][method]["responses"][status]["content"]
        assert content == {"application/json": {"schema": {"$ref": COMPONENTS + component}}}
    # Refusals are application/problem+json, as problems.py sends them, and nothing else.
    refusal = doc["paths"]["/v1/dossiers"]["post"]["responses"]["422"]["content"]
    assert refusal == {"application/problem+json": {"schema": {"$ref": COMPONENTS + "Problem"}}}
    assert set(doc["components"]["securitySchemes"]) == {"apiKey", "oauth2",
                                                         "clientCertificate",
                                                         "operatorSession", "operatorBasic"}


def test_every_capped_operation_publishes_the_busy_refusal(hub: Hub) -> None:
    """A process at its cap of requests in flight refuses any request but the probes' and the
    metrics' (hub.api.limits.NOT_CAPPED): each other operation lists that 503, a problem, with
    its Retry-After (not every 503 of a route carries one)."""
    doc = hub.http.get("/openapi.json").json()
    operations = [(path, method, op) for path, ops in doc["paths"].items()
                  for method, op in ops.items()]
    capped = [(path, method, op) for path, method, op in operations
              if path not in NOT_CAPPED]
    assert len(capped) > 15, sorted(doc["paths"])
    for path, method, op in capped:
        busy = op["responses"].get("503")
        assert busy is not None and "server.busy" in busy["description"], (path, method)
        assert busy["content"] == {
            "application/problem+json": {"schema": {"$ref": COMPONENTS + "Problem"}}}, path
        assert busy["headers"]["Retry-After"]["required"] is False, (path, method)


def test_the_served_components_are_the_contracts(hub: Hub) -> None:
    """Nothing restated by a model: every component comes from a contract file, each is a
    valid JSON Schema 2020-12 (the dialect of OpenAPI 3.1), every reference resolves."""
    doc = hub.http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1.")
    components = doc["components"]["schemas"]
    assert components == contract_components(SCHEMAS)
    for schema in components.values():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert "$id" not in schema  # it would move the base URI of the references inside
    refs: list[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            refs.extend(v for k, v in node.items() if k == "$ref" and isinstance(v, str))
            for v in node.values():
                collect(v)
        elif isinstance(node, list):
            for v in node:
                collect(v)

    collect(doc)
    assert refs and all(r.startswith(COMPONENTS) and r[len(COMPONENTS):] in components
                        for r in refs), sorted(set(refs))


def _write(directory: Path, name: str, schema: dict[str, Any]) -> None:
    (directory / f"{name}.schema.json").write_text(json.dumps(schema))


def test_contract_files_become_components(tmp_path: Path) -> None:
    code = {"type": "string", "pattern": "^[A-Z]$"}
    _write(tmp_path, "a", {"$schema": "https://json-schema.org/draft/2020-12/schema",
                           "$id": "urn:test:a", "title": "A", "type": "object",
                           "properties": {"code": {"$ref": "#/$defs/Code"},
                                          "b": {"$ref": "b.schema.json"},
                                          "c": {"$ref": "urn:test:b#/$defs/Code"},
                                          "self": {"$ref": "#"}},
                           "$defs": {"Code": code}})
    _write(tmp_path, "b", {"$id": "urn:test:b", "title": "B", "type": "object",
                           "properties": {"code": {"$ref": "#/$defs/Code"}},
                           "$defs": {"Code": code}})  # the same definition: one component
    doc: dict[str, Any] = {"paths": {"/x": {"post": {"requestBody": {"content": {
        "application/json": {"schema": {"$ref": "a.schema.json"}}}}}}}}
    serve_contracts(doc, tmp_path)
    assert doc["paths"]["/x"]["post"]["requestBody"]["content"]["application/json"] == {
        "schema": {"$ref": COMPONENTS + "A"}}
    assert doc["components"]["schemas"] == {
        "A": {"title": "A", "type": "object",
              "properties": {"code": {"$ref": COMPONENTS + "Code"},
                             "b": {"$ref": COMPONENTS + "B"},
                             "c": {"$ref": COMPONENTS + "Code"},
                             "self": {"$ref": COMPONENTS + "A"}}},
        "B": {"title": "B", "type": "object",
              "properties": {"code": {"$ref": COMPONENTS + "Code"}}},
        "Code": code,
    }


@pytest.mark.parametrize("b, ref, words", [
    ({"title": "B", "$defs": {"Code": {"type": "integer"}}}, "#/$defs/Code", "differently"),
    ({"title": "A"}, "#/$defs/Code", "differently"),
    ({"title": "B"}, "#/properties/x", "only whole files"),
    ({"title": "B"}, "#/$defs/Nothing", "only whole files"),
    ({"title": "B"}, "c.schema.json", "is neither one of its"),
])
def test_contracts_that_cannot_be_served_are_refused(tmp_path: Path, b: dict[str, Any],
                                                     ref: str, words: str) -> None:
    _write(tmp_path, "a", {"title": "A", "properties": {"x": {"$ref": ref}},
                           "$defs": {"Code": {"type": "string"}}})
    _write(tmp_path, "b", b)
    with pytest.raises(ConfigError, match=words):
        contract_components(tmp_path)


def test_contract_files_accept_what_the_hub_accepts(hub: Hub) -> None:
    jsonschema.validate(dossier("000.00.00.H56-250101-0001"),
                        contract("dossier-submission.schema.json"))
    code = "000.00.00.H56-250101-0001"
    jsonschema.validate({"dossier_code": code, "status": 2, "at": "2025-01-01T08:00:00"},
                        contract("status-change.schema.json"))
    jsonschema.validate(payment(dossier_code=code), contract("payment-request.schema.json"))
    jsonschema.validate(postal_order(dossier_code=code), contract("postal-order.schema.json"))
    jsonschema.validate(verification(dossier_code="000.00.00.H56-250101-0001"),
                        contract("citizen-verification.schema.json"))


def test_contract_files_refuse_what_the_hub_refuses() -> None:
    refused = [
        ("payment-request.schema.json", payment(amount=0)),
        ("payment-request.schema.json", payment(reference="")),
        ("postal-order.schema.json", postal_order(direction="sideways")),
        ("citizen-verification.schema.json", verification(identity_number="0010990123")),
        ("citizen-verification.schema.json", {"identity_number": "001099012345"}),
        # The path routes' bodies name the path's dossier (the signature covers the body).
        ("status-change.schema.json", {"status": 2, "at": "2025-01-01T08:00:00"}),
        ("payment-request.schema.json", payment()),
        ("postal-order.schema.json", postal_order()),
    ]
    for filename, value in refused:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(value, contract(filename))


# -- the hub's own validation (hub.model, hub.codes) against the contract files ---------------

CODE = "000.00.00.H56-250101-0001"
EVENTS = {"dossier-submission": SUBMITTED, "status-change": STATUS, "progress-step": PROGRESS,
          "payment-request": PAYMENT, "postal-order": POSTAL,
          "citizen-verification": VERIFICATION}


def valid_body(name: str) -> dict[str, Any]:
    """A body of each contract that both accept; the path routes' bodies carry the path's
    dossier code, as the route adds it before the hub validates."""
    bodies: dict[str, Callable[[], dict[str, Any]]] = {
        "dossier-submission": lambda: dossier(CODE),
        "status-change": lambda: {"dossier_code": CODE, "status": 2,
                                  "at": "2025-01-01T08:00:00"},
        "progress-step": lambda: {"dossier_code": CODE, "officer": "Lê Thị B",
                                  "content": "thẩm định", "status": 4,
                                  "at": "2025-01-02T09:00:00+07:00"},
        "payment-request": lambda: payment(dossier_code=CODE),
        "postal-order": lambda: postal_order(dossier_code=CODE),
        "citizen-verification": verification,
    }
    return bodies[name]()


def with_field(body: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    *parents, last = field.split(".")
    node = body
    for part in parents:
        node = node[part]
    node[last] = value
    return body


def contract_accepts(name: str, body: dict[str, Any]) -> bool:
    doc = contract(f"{name}.schema.json")
    validator = jsonschema.Draft202012Validator(doc, format_checker=jsonschema.FormatChecker())
    return bool(validator.is_valid(body))


def hub_accepts(name: str, body: dict[str, Any]) -> bool:
    try:
        parse_event_data(EVENTS[name], body)
    except HubError:
        return False
    return True


AGREED: list[tuple[str, str, Any, bool]] = [
    # contract, field, value, whether both accept it
    ("dossier-submission", "code", "000.20.31.H56-240229-9999", True),
    ("dossier-submission", "code", "H55.242-251231-0001", True),
    ("dossier-submission", "code", "000.00.00.H56-250229-0001", False),  # 2025 is no leap year
    ("dossier-submission", "code", "000.00.00.H56-251301-0001", False),
    ("dossier-submission", "code", "000.00.00.H56-250431-0001", False),
    ("dossier-submission", "code", "000.00.00.H56-250101-0000", False),  # counters start at 1
    ("dossier-submission", "code", "000.00.00.H56-250101-001", False),
    ("dossier-submission", "code", "000.00.00.h56-250101-0001", False),
    ("dossier-submission", "code", "\uff1000.00.00.H56-250101-0001", False),  # fullwidth 0
    ("dossier-submission", "code", "000.00.00.H56-250101-000\u0663", False),  # Arabic-Indic 3
    ("dossier-submission", "agency_code", "000.00.00.G22", True),
    ("dossier-submission", "agency_code", "H56", True),
    ("dossier-submission", "agency_code", "0000.00.00.H56", False),
    ("dossier-submission", "agency_code", "00.00.00.00.H56", False),
    ("dossier-submission", "agency_code", "000.00.00.H56.12345", False),
    ("dossier-submission", "agency_code", "000.00.00.H\u09eb\u09ec", False),  # Bengali digits
    ("dossier-submission", "procedure_code", "2.002492.000.00.00.H56.01", True),
    ("dossier-submission", "procedure_code", "2.002492.01", True),
    ("dossier-submission", "procedure_code", "2.00249", False),
    ("dossier-submission", "procedure_code", "2.002492.10", False),
    ("dossier-submission", "procedure_code", "\uff12.002492", False),
    ("dossier-submission", "applicant.identity_number", "123456789", True),  # old ID card
    ("dossier-submission", "applicant.identity_number", "0010990123", False),
    ("dossier-submission", "applicant.identity_number", "00109901234a", False),
    ("dossier-submission", "applicant.identity_number", "\uff10" * 12, False),
    ("dossier-submission", "submitted_at", "2025-01-01T08:00:00", True),  # Vietnam time
    ("dossier-submission", "submitted_at", "2025-01-01T01:00:00Z", True),
    ("dossier-submission", "submitted_at", "2024-02-29T08:00:00.123456+07:00", True),
    ("dossier-submission", "submitted_at", "2025-01-01T08:00:00.5-23:59", True),
    ("dossier-submission", "submitted_at", "2025-01-01T08:00:00+24:00", False),
    ("dossier-submission", "submitted_at", "2025-01-01T08:00:60", False),
    ("dossier-submission", "submitted_at", "2025-02-29T08:00:00", False),
    ("dossier-submission", "submitted_at", "2025-01-01T24:00:00", False),
    ("dossier-submission", "submitted_at", "1899-12-31T23:59:59", False),
    ("dossier-submission", "submitted_at", "2201-01-01T00:00:00", False),
    ("dossier-submission", "submitted_at", "not a time", False),
    ("dossier-submission", "channel", 2.0, True),  # an integer to JSON Schema
    ("dossier-submission", "channel", 2.5, False),
    ("dossier-submission", "applicant.birth_date", "1850-01-01", True),
    ("dossier-submission", "applicant.birth_date", "2000-02-29", True),
    ("dossier-submission", "applicant.birth_date", "1900-02-29", False),
    ("dossier-submission", "applicant.birth_date", "1849-12-31", False),
    ("dossier-submission", "fees", [{"code": "F", "name": "phí", "amount": "0"}], True),
    ("dossier-submission", "fees", [{"code": "F", "name": "phí", "amount": -1}], False),
    ("dossier-submission", "fees", [{"code": "F", "name": "phí", "amount": "ten"}], False),
    ("status-change", "at", "2025-04-31T08:00:00", False),
    ("status-change", "dossier_code", "000.00.00.H56-250101-0000", False),
    ("progress-step", "started_at", "2025-01-01T07:00:00+06:00", True),
    ("progress-step", "due_at", "31/01/2025", False),
    ("payment-request", "amount", "0.50", True),
    ("payment-request", "amount", 1, True),
    ("payment-request", "amount", "0.00", False),
    ("payment-request", "amount", 0, False),
    ("postal-order", "cod_amount", "0", True),
    ("postal-order", "cod_amount", -5, False),
    ("citizen-verification", "name", "", False),
    ("citizen-verification", "birth_year", 1990, True),
    ("citizen-verification", "birth_year", 1849, False),
    ("citizen-verification", "dossier_code", "000.00.00.H56-250132-0001", False),
]


@pytest.mark.parametrize("name, field, value, accepted", AGREED)
def test_the_hub_validates_as_the_contract_says(name: str, field: str, value: Any,
                                                accepted: bool) -> None:
    body = with_field(valid_body(name), field, value)
    assert contract_accepts(name, body) is accepted
    assert hub_accepts(name, body) is accepted


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_the_valid_bodies_are_valid(name: str) -> None:
    assert contract_accepts(name, valid_body(name)) and hub_accepts(name, valid_body(name))


def test_calendar_dates_agree_day_by_day() -> None:
    """Every day around the edges (month ends, leap days, the bounds on years), in a dossier
    code, a time and a date of birth."""
    days = [f"{y:04d}-{m:02d}-{d:02d}" for y in (1849, 1850, 1852, 1899, 1900, 1904, 2000,
                                                 2023, 2024, 2099, 2100, 2104, 2200, 2201)
            for m in range(0, 14) for d in range(0, 33)]
    for day in days:
        for name, field, value in [
            ("citizen-verification", "birth_date", day),
            ("status-change", "at", f"{day}T08:00:00"),
            ("dossier-submission", "code", f"000.00.00.H56-{day[2:4]}{day[5:7]}{day[8:]}-0001"),
        ]:
            if field == "code" and not "2000" <= day[:4] <= "2099":
                continue  # a dossier code's yy is 2000 + yy
            body = with_field(valid_body(name), field, value)
            assert contract_accepts(name, body) == hub_accepts(name, body), (field, value)


def refused(name: str, field: str, value: Any, code: str = "client.schema_invalid",
            named: str | None = None) -> Any:
    """A case both refuse: the contract, field ``field`` set to ``value``; the hub with
    ``code``, naming ``named`` (the field, or the element of a list the value holds)."""
    return pytest.param(name, field, value, code, named or field, id=f"{name}.{field}={value!r}")


BAD_CODE = "client.bad_code"
# What pydantic's lax mode took (numbers and booleans as strings, times as numbers, with a
# space or without seconds, dates as times, amounts as any text Python's Decimal reads) and
# what hub/codes.py took by stripping blanks.
REFUSED = [
    refused("dossier-submission", "code", f" {CODE}", BAD_CODE),
    refused("dossier-submission", "code", f"{CODE}\u3000", BAD_CODE),  # ideographic space
    refused("dossier-submission", "procedure_code", "2.002492 ", BAD_CODE),
    refused("dossier-submission", "agency_code", "\t000.00.00.H56", BAD_CODE),
    refused("dossier-submission", "applicant.identity_number", "001099012345 ", BAD_CODE),
    refused("dossier-submission", "channel", "2"),
    refused("dossier-submission", "channel", True),
    refused("dossier-submission", "status", "1"),
    refused("dossier-submission", "applicant.kind", "1"),
    refused("dossier-submission", "paid_online", "true"),
    refused("dossier-submission", "paid_online", 1),
    refused("dossier-submission", "result_by_post", "false"),
    refused("dossier-submission", "attachments",
            [{"id": "1", "name": "a.pdf", "url": "https://x/a.pdf", "size": "1024",
              "sha256": "0" * 64}], named="attachments.0.size"),
    refused("dossier-submission", "attachments",
            [{"id": "1", "name": "a.pdf", "url": "https://x/a.pdf", "size": 1,
              "sha256": "0" * 64, "digitized": "true"}], named="attachments.0.digitized"),
    refused("dossier-submission", "fees", [{"code": "F", "name": "phí", "amount": "1",
                                            "kind": "2"}], named="fees.0.kind"),
    refused("dossier-submission", "submitted_at", 1735689600),
    refused("dossier-submission", "submitted_at", 1735689600.5),
    refused("dossier-submission", "submitted_at", "1735689600"),
    refused("dossier-submission", "submitted_at", "2025-01-01 08:00:00"),
    refused("dossier-submission", "submitted_at", "2025-01-01t08:00:00"),
    refused("dossier-submission", "submitted_at", "2025-01-01"),
    refused("dossier-submission", "submitted_at", "2025-01-01T08:00"),
    refused("dossier-submission", "submitted_at", "2025-01-01T08:00:00.1234567"),
    refused("dossier-submission", "submitted_at", "2025-01-01T08:00:00z"),
    refused("dossier-submission", "submitted_at", "2025-01-01T08:00:00+0700"),
    refused("dossier-submission", "submitted_at", "2025-01-01T08:00:00+07"),
    refused("dossier-submission", "submitted_at", " 2025-01-01T08:00:00"),
    refused("dossier-submission", "submitted_at", "\uff12025-01-01T08:00:00"),  # fullwidth 2
    refused("dossier-submission", "applicant.birth_date", "2000-01-01T00:00:00"),
    refused("dossier-submission", "applicant.birth_date", "20000101"),
    refused("dossier-submission", "applicant.birth_date", "2000-01-01Z"),
    refused("dossier-submission", "applicant.birth_date", 946684800),
    refused("status-change", "status", "2"),
    refused("status-change", "status", True),
    refused("status-change", "previous_status", "1"),
    refused("status-change", "at", "2025-01-01 08:00:00"),
    refused("status-change", "at", 1735689600),
    refused("progress-step", "started_at", "2025-01-01T07:00"),
    refused("payment-request", "payer.identity_number", " 001099012345", BAD_CODE),
    refused("payment-request", "agency_code", "000.00.00.H56 ", BAD_CODE),
    refused("citizen-verification", "identity_number", "001099012345\t", BAD_CODE),
    refused("citizen-verification", "birth_year", "1990"),
    refused("citizen-verification", "birth_date", "1999-05-01T00:00:00"),
    refused("payment-request", "amount", "1e30"),
    refused("payment-request", "amount", "1.5E5"),
    refused("payment-request", "amount", " 150000"),
    refused("payment-request", "amount", "+150000"),
    refused("payment-request", "amount", "150_000"),
    refused("payment-request", "amount", ".5"),
    refused("payment-request", "amount", "150000."),
    refused("payment-request", "amount", "\u0661\u0665\u0660"),  # Arabic-Indic digits
    refused("payment-request", "amount", True),
    refused("payment-request", "fees", [{"code": "F", "name": "phí", "amount": "7.5e4"}],
            named="fees.0.amount"),
    refused("dossier-submission", "fees", [{"code": "F", "name": "phí", "amount": "-0"}],
            named="fees.0.amount"),
    refused("postal-order", "cod_amount", "25000 "),
    refused("postal-order", "cod_amount", "-0"),
]


@pytest.mark.parametrize("name, field, value, code, named", REFUSED)
def test_the_hub_refuses_what_the_contract_refuses(name: str, field: str, value: Any,
                                                   code: str, named: str) -> None:
    body = with_field(valid_body(name), field, value)
    assert not contract_accepts(name, body)
    with pytest.raises(HubError) as err:
        parse_event_data(EVENTS[name], body)
    assert (err.value.code, err.value.field, err.value.http_status) == (code, named, 422)


ROUTES = {"dossier-submission": "/v1/dossiers", "status-change": f"/v1/dossiers/{CODE}/status",
          "progress-step": f"/v1/dossiers/{CODE}/progress",
          "payment-request": f"/v1/dossiers/{CODE}/payments",
          "postal-order": f"/v1/dossiers/{CODE}/postal-orders",
          "citizen-verification": "/v1/citizens/verifications"}


@pytest.mark.parametrize("name, field, value, code, named", REFUSED)
def test_a_request_the_contract_refuses_gets_a_422_naming_the_field(
        hub: Hub, name: str, field: str, value: Any, code: str, named: str) -> None:
    """The same cases through the app: a signed request of a client allowed to send it."""
    body = with_field(valid_body(name), field, value)
    answer = hub.post(ROUTES[name], body, EVENTS[name])
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert (problem["code"], problem["field"], problem["origin"]) == (code, named, "hub")
    assert problem["detail"].startswith(f"{named}: ")
    assert hub.outbox_count() == 0


@pytest.mark.parametrize(("name", "field", "literal"), [
    ("payment-request", "amount", "1e30"), ("payment-request", "amount", "1.5E5"),
    ("postal-order", "cod_amount", "2.5e4"), ("postal-order", "cod_amount", "0e0"),
])
def test_an_amount_written_with_an_exponent_is_refused(hub: Hub, name: str, field: str,
                                                       literal: str) -> None:
    """JSON Schema reads a number's value only, so the contract takes 1e30 as it takes its
    digits; the hub refuses the exponent in an amount (written in digits by every system that
    keys one in, read alike by every parser), which the contract's description says."""
    body = json.dumps(with_field(valid_body(name), field, "@")).replace('"@"', literal)
    answer = hub.post(ROUTES[name], None, EVENTS[name], raw=body.encode())
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert (problem["code"], problem["field"]) == ("client.schema_invalid", field)
    assert "exponent" in problem["message"]
    assert hub.outbox_count() == 0


@pytest.mark.parametrize("route", ["status", "progress", "payments", "postal-orders",
                                   "timeline"])
def test_a_path_code_with_blanks_is_refused(hub: Hub, route: str) -> None:
    path = f"/v1/dossiers/{quote(f' {CODE}')}/{route}"
    if route == "timeline":
        answer = hub.http.get(path, headers=hub.headers)
    else:
        name = {"status": "status-change", "progress": "progress-step",
                "payments": "payment-request", "postal-orders": "postal-order"}[route]
        body = valid_body(name)
        body.pop("dossier_code", None)
        answer = hub.post(path, body, EVENTS[name])
    assert answer.status_code == 422, answer.text
    assert (answer.json()["code"], answer.json()["field"]) == (BAD_CODE, "code")


def test_the_valid_bodies_are_accepted_through_the_app(hub: Hub) -> None:
    for name, route in ROUTES.items():
        answer = hub.post(route, valid_body(name), EVENTS[name])
        assert answer.status_code == 202, (name, answer.text)


@pytest.mark.parametrize("field, value", [
    ("code", f"{CODE}\n"), ("applicant.identity_number", "001099012345\n"),
    ("submitted_at", "2025-01-01T08:00:00\n"), ("applicant.birth_date", "2000-01-01\n"),
])
def test_a_trailing_line_break_is_refused(field: str, value: Any) -> None:
    """The contract refuses it too, as ECMA-262 (the dialect of its patterns) reads ``$``: the
    end of the text. Python's ``$`` also matches before a final line break, so the jsonschema
    package takes it, and the hub must not rely on a ``$`` of its own."""
    body = with_field(valid_body("dossier-submission"), field, value)
    assert not hub_accepts("dossier-submission", body)


def test_a_code_of_non_ascii_digits_is_refused_at_the_door(hub: Hub) -> None:
    answer = hub.submit(dossier("000.00.00.H56-250101-000\u0663"))
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "client.bad_code" and answer.json()["field"] == "code"


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
        low = schema.get("minimum", -5)
        return st.integers(min_value=low, max_value=schema.get("maximum", max(low, 0) + 20))
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


CONSOLE = "/v1/console/"


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_request_makes_the_hub_fail(hub: Hub, data: st.DataObject) -> None:
    doc = hub.app.openapi()
    # The operator console's routes take an operator's session, not a system's signed body:
    # tests/test_console_api.py and the schemathesis run cover them.
    operations = sorted((path, method) for path, item in doc["paths"].items()
                        for method in item if not path.startswith(CONSOLE))
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
            if "{code}" in path:  # the body names the path's dossier, as the contract asks
                value["dossier_code"] = code
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
              if "application/json" in operation.get("requestBody", {}).get("content", {})
              and not path.startswith(CONSOLE)}
    assert signed == set(EVENT_TYPES)
