"""schemathesis against the OpenAPI document `lienthong serve` serves, on a real socket, with
the store, trust store, clients file and broker it has in production.

Every JSON body schemathesis generates is signed by a hook (``sign_generated_body``) with a key
the hub trusts, over the exact bytes sent, so the requests get past the signature to
validation, authorization and the store: the run finds where the hub and its document disagree.
Every check of schemathesis runs, on the examples, coverage and fuzzing phases: no 5xx; every
status code, content type, header and body documented; a request the document refuses is
refused (negative data, a missing required header, an empty ``Idempotency-Key``); one it
accepts is accepted, but for refusals no request schema can express (below); a wrong method
is 405 with ``Allow``; credentials are not ignored. Seeded and derandomized, bounded to a few
hundred requests."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import Case, HookContext
from schemathesis.core.failures import Failure
from schemathesis.engine import Status, events
from schemathesis.openapi.checks import RejectedPositiveData
from test_api_support import (  # noqa: F401 - fixtures
    API_KEY,
    CLIENT_ID,
    Keys,
    declare_events,
    keys_fixture,
)

from hub.cli.clients import client_block
from hub.envelope import Envelope
from hub.settings import Settings
from hub.signing.jws import Signer
from hub.signing.truststore import TrustStore
from hub.simulation import free_port
from hub.testing.processes import serving

# The event type each signed route's signature must name (the JWS protected header's lt-type).
EVENT_TYPES = {
    "/v1/dossiers": "vn.gov.dossier.submitted",
    "/v1/dossiers/{code}/status": "vn.gov.dossier.status-changed",
    "/v1/dossiers/{code}/progress": "vn.gov.dossier.progress-reported",
    "/v1/dossiers/{code}/payments": "vn.gov.payment.requested",
    "/v1/dossiers/{code}/postal-orders": "vn.gov.postal.pickup-requested",
    "/v1/citizens/verifications": "vn.gov.citizen.verification-requested",
}
# Refusals no request schema can express, so a schema-valid request may get them: a status
# change the dossier's current status does not allow (it depends on what came before).
STATEFUL_REFUSALS = {"client.bad_transition"}
SEED = 20250101
MAX_EXAMPLES = 6  # per operation, in the fuzzing phase; the coverage phase is exhaustive

# The client whose key signs the generated bodies, while a served hub is up (the hook is
# global in schemathesis, so it does nothing when no test of this module runs).
_signers: list[Signer] = []


@schemathesis.hook
def before_call(context: HookContext, case: Case[Any], kwargs: dict[str, Any]) -> None:
    sign_generated_body(case, kwargs)


def sign_generated_body(case: Case[Any], kwargs: dict[str, Any]) -> None:
    """Replace the generated ``X-Signature`` of a signed route with a real signature over the
    bytes about to be sent, which are then sent as they are (``data``). A request schemathesis
    sends without the header (to see it refused) stays without it."""
    event_type = EVENT_TYPES.get(case.path)
    headers: dict[str, Any] = dict(case.headers or {})
    if not _signers or event_type is None or case.method.upper() != "POST" \
            or "X-Signature" not in headers or isinstance(case.body, schemathesis.core.NotSet):
        return
    body = case.body
    if isinstance(body, dict) and "{code}" in case.path and "dossier_code" in body \
            and body["dossier_code"] is not None:
        # The path's code and the body's must be one (described in the document; no schema
        # can say two values are equal): a generated body repeats the path's.
        body["dossier_code"] = case.path_parameters["code"]
    raw = body if isinstance(body, bytes) else plain_json(body)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return  # unsignable as JWS b64=false; sent with the generated header, and refused
    signer = _signers[-1]
    env = Envelope(id=str(uuid.uuid4()), source=signer.system_id, type=event_type,
                   subject="-", time=datetime.now(UTC), data=None)
    kwargs["data"] = raw
    case.headers["X-Signature"] = signer.sign(raw, env)


def plain_json(value: Any) -> bytes:
    """``value`` as JSON with every float in plain digits: the contracts' amounts refuse a
    number written with an exponent (their descriptions say so; JSON Schema reads only a
    number's value), and Python writes small and large floats with one (5e-324)."""
    floats: dict[str, str] = {}
    tag = uuid.uuid4().hex

    def mark(node: Any) -> Any:
        if isinstance(node, float):
            floats[f"{tag}{len(floats)}"] = format(Decimal(repr(node)), "f")
            return f"{tag}{len(floats) - 1}"
        if isinstance(node, dict):
            return {k: mark(v) for k, v in node.items()}
        if isinstance(node, list):
            return [mark(v) for v in node]
        return node

    text = json.dumps(mark(value))
    for name, digits in floats.items():
        text = text.replace(f'"{name}"', digits)
    return text.encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, amqp_url: str,
           keys: Keys) -> Iterator[str]:
    """`lienthong serve` set up as the README says, for a client that may send every type for
    every agency (so generated codes get past the access list); its base URL."""
    tmp = tmp_path_factory.mktemp("schemathesis")
    prefix = f"lt{uuid.uuid4().hex[:8]}"
    declare_events(amqp_url, prefix)  # the relay publishes; /readyz says so
    paths = Settings(data_dir=tmp)
    keys.hub.save(paths.keys_dir)
    TrustStore(paths.trust_dir).add(keys.client.certificate_pem())
    clients = tmp / "clients.toml"
    clients.write_text(client_block(CLIENT_ID, "igate", ["vn.gov.*"], ["*"], api_key=API_KEY,
                                    oauth_client_id=None, oauth_secret=None, cert_sha256=[]))
    port = free_port()
    env = {**os.environ, "LIENTHONG_DATA_DIR": str(tmp), "LIENTHONG_AMQP_URL": amqp_url,
           "LIENTHONG_NAME_PREFIX": prefix, "LIENTHONG_CLIENTS_FILE": str(clients)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-c", "from hub.cli import main; main()", "serve", "--port",
               str(port), "--workers", "1", "--log-level", "warning"]
    with serving(command, port, env=env) as base:
        _signers.append(keys.signer(keys.client))
        try:
            yield base
        finally:
            _signers.clear()


def load_schema(base: str) -> Any:
    config = schemathesis.Config.from_dict({
        "seed": SEED,
        "base-url": base,
        "generation": {"mode": "all", "deterministic": True, "database": "none",
                       "max-examples": MAX_EXAMPLES},
        "phases": {"stateful": {"enabled": False}},
        "auth": {"openapi": {"apiKey": {"api_key": API_KEY}}},
    })
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", config=config)

    @schema.hook
    def filter_failure(context: HookContext, failure: Failure, case: Case[Any],
                       response: schemathesis.Response) -> bool:
        """Keep every failure but a schema-valid request refused for a reason of state."""
        if failure.code != RejectedPositiveData.code or response.status_code != 422:
            return True
        return json.loads(response.content).get("code") not in STATEFUL_REFUSALS

    return schema


@dataclass
class Run:
    failures: list[str] = field(default_factory=list)
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))


def run(schema: Any) -> Run:
    """Every phase of schemathesis's engine over ``schema``, as its command line runs them;
    what failed, and the statuses each operation answered."""
    result = Run()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.NonFatalError):
            result.failures.append(f"error: {event.info.title}: {event.info.message}")
        if isinstance(event, events.FatalError):
            result.failures.append(f"fatal: {event.exception!r}")
        if not isinstance(event, events.ScenarioFinished):
            continue
        for interaction in event.recorder.interactions.values():
            if interaction.response is not None:
                result.statuses[event.label or ""][interaction.response.status_code] += 1
        for case_id, checks in event.recorder.checks.items():
            sent = event.recorder.interactions.get(case_id)
            answer = sent.response if sent is not None else None
            answered = "" if answer is None else \
                f"\n-> {answer.status_code} {answer.content[:400]!r}"
            result.failures.extend(
                f"{event.label}: {check.name}: {check.failure_info.failure.title}: "
                f"{check.failure_info.failure.message}\n{check.failure_info.code_sample}"
                f"{answered}"
                for check in checks
                if check.status == Status.FAILURE and check.failure_info is not None)
    return result


def test_the_hub_does_what_its_document_says(served: str) -> None:
    result = run(load_schema(served))
    assert not result.failures, "\n\n".join(dict.fromkeys(result.failures))
    # The run went where it should: every operation, and the signed bodies past the
    # signature to the store (202) and to validation (422).
    document = httpx.get(f"{served}/openapi.json").json()
    operations = {f"{method.upper()} {path}" for path, item in document["paths"].items()
                  for method in item}
    assert operations <= set(result.statuses), sorted(result.statuses)
    for path in EVENT_TYPES:
        answered = result.statuses[f"POST {path}"]
        assert answered[202] and answered[422], (path, answered)


def test_the_document_declares_what_the_hub_checks(served: str) -> None:
    """What the run relies on, said by the document itself."""
    document = httpx.get(f"{served}/openapi.json").json()
    paths, components = document["paths"], document["components"]["schemas"]
    contract = json.loads((Settings().schemas_dir / "api" / "status-change.schema.json")
                          .read_text())
    assert components["DossierCode"] == contract["$defs"]["DossierCode"]
    for path, item in paths.items():
        for method, operation in item.items():
            codes = [p for p in operation.get("parameters", []) if p["name"] == "code"]
            if "{code}" in path:
                assert codes == [{"name": "code", "in": "path", "required": True,
                                  "description": codes[0]["description"],
                                  "schema": {"$ref": "#/components/schemas/DossierCode"}}]
            allow = operation["responses"]["405"]["headers"]["Allow"]
            assert allow["required"], (method, path)
            if path in EVENT_TYPES:
                key = next(p for p in operation["parameters"]
                           if p["name"] == "Idempotency-Key")["schema"]
                assert key["minLength"] == 1 and key["pattern"].startswith("^[!-~]")
    for path in ("/healthz", "/readyz", "/metrics"):
        assert paths[path]["get"]["security"] == [], path
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert set(paths["/readyz"]["get"]["responses"]) >= {"200", "503"}
    assert document["security"]  # everything else needs credentials
    # And the hub answers the open routes without any.
    assert httpx.get(f"{served}/metrics").headers["content-type"].startswith("text/plain")
    assert httpx.get(f"{served}/healthz").json() == {"status": "ok"}
