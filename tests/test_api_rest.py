"""REST requests that are wrong in their codes, fields, types, JSON or signature get a 4xx
problem naming the field; the health, readiness and metrics routes answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jws
from joserfc.errors import BadSignatureError
from joserfc.jwk import ECKey
from test_api_support import (  # noqa: F401 - fixtures
    PROGRESS,
    STATUS,
    SUBMITTED,
    Hub,
    declare_events,
    dossier,
    drain,
    keys_fixture,
    make_hub_fixture,
    new_code,
    sign,
)

from hub.envelope import Envelope
from hub.intake.drafts import UPSTREAM_PROOF
from hub.settings import Settings
from hub.signing.keys import kid_of
from hub.testing.waiting import wait_for


@pytest.fixture
def hub(make_hub: Callable[..., Hub]) -> Hub:
    return make_hub()


def problem(answer: Any, status: int, code: str, field: str | None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert (body["code"], body.get("field"), body["origin"]) == (code, field, "hub")
    assert body["status"] == status and body["type"] == f"urn:lienthong:error:{code}"
    assert body["message"]
    return body


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"code": "H56-250101-1"}, "client.bad_code", "code"),
        ({"code": "000.00.00.H56-251301-0001"}, "client.bad_code", "code"),  # month 13
        ({"agency_code": "nowhere"}, "client.bad_code", "agency_code"),
        ({"procedure_code": "2.2492"}, "client.bad_code", "procedure_code"),
        ({"applicant": {"identity_number": "12345", "name": "A"}}, "client.bad_code",
         "applicant.identity_number"),
        ({"channel": "online"}, "client.schema_invalid", "channel"),
        ({"channel": 7}, "client.schema_invalid", "channel"),
        ({"submitted_at": "yesterday"}, "client.schema_invalid", "submitted_at"),
        ({"attachments": [{"id": "1", "name": "a.pdf", "url": "ftp://x", "size": 1,
                           "sha256": "0" * 64}]}, "client.schema_invalid", "attachments.0.url"),
        ({"fees": [{"code": "F", "name": "fee", "amount": -1}]}, "client.schema_invalid",
         "fees.0.amount"),
        ({"colour": "blue"}, "client.schema_invalid", "colour"),
    ],
)
def test_bad_dossiers_name_the_field(hub: Hub, change: dict[str, Any], code: str,
                                     field: str) -> None:
    body = problem(hub.submit({**dossier(new_code()), **change}), 422, code, field)
    assert field.split(".")[0] in body["detail"]


@pytest.mark.parametrize("missing", ["code", "procedure_code", "agency_code", "applicant",
                                     "channel"])
def test_missing_fields_are_named(hub: Hub, missing: str) -> None:
    data = dossier(new_code())
    del data[missing]
    body = problem(hub.submit(data), 422, "client.schema_invalid", missing)
    assert "required" in body["message"].lower()


def test_status_and_progress_bodies(hub: Hub) -> None:
    code = new_code()
    path = f"/v1/dossiers/{code}/status"
    problem(hub.post(path, {"at": "2025-01-01T08:00:00"}, STATUS), 422,
            "client.schema_invalid", "status")
    problem(hub.post(path, {"status": "two", "at": "2025-01-01T08:00:00"}, STATUS), 422,
            "client.schema_invalid", "status")
    problem(hub.post(path, {"status": 2, "at": "2025-01-01T08:00:00",
                            "dossier_code": new_code()}, STATUS),
            422, "client.schema_invalid", "dossier_code")
    problem(hub.post("/v1/dossiers/not-a-code/status", {"status": 2, "at": "2025-01-01"},
                     STATUS), 422, "client.bad_code", "code")
    problem(hub.post(f"/v1/dossiers/{code}/progress", {"officer": "A", "status": 4,
                                                        "at": "2025-01-01T08:00:00"}, PROGRESS),
            422, "client.schema_invalid", "content")
    ok = hub.post(path, {"status": 2, "at": "2025-01-01T08:00:00", "dossier_code": code}, STATUS)
    assert ok.status_code == 202


def test_body_must_be_a_json_object(hub: Hub) -> None:
    problem(hub.submit({}, raw=b'{"code": '), 400, "client.unparseable", "body")
    problem(hub.submit({}, raw=b"[1, 2]"), 422, "client.schema_invalid", "body")
    problem(hub.submit(dossier(new_code()), headers={"Content-Type": "text/xml"}), 415,
            "client.unsupported_media_type", "Content-Type")


def test_signatures_are_required_and_checked(hub: Hub) -> None:
    """Refusals name X-Signature, the header the client sends, not the hub's AMQP header."""
    data = dossier(new_code())
    body = json.dumps(data).encode()
    answer = hub.http.post("/v1/dossiers", content=body, headers=hub.headers)
    missing = problem(answer, 400, "client.missing_signature", "X-Signature")
    assert "X-Signature header" in missing["message"]
    token = sign(hub.client_signer, body, SUBMITTED)
    tampered = problem(hub.submit({}, raw=body.replace(b"Nguy", b"Ngu "), token=token), 400,
                       "client.bad_signature", "X-Signature")
    assert "lt-signature" not in json.dumps([missing, tampered])
    # A signature made for another path's event type cannot be reused here.
    problem(hub.submit({}, raw=body, token=sign(hub.client_signer, body, STATUS)), 400,
            "client.header_mismatch", "lt-type")
    # Signed by another system than the authenticated client.
    other = hub.keys.signer(hub.keys.other)
    problem(hub.submit(data, signer=other), 400, "client.signer_mismatch", "source")
    problem(hub.submit({}, raw=body, token="garbage"), 400, "client.bad_signature",
            "X-Signature")
    assert hub.outbox_count() == 0


def test_timeline_route(hub: Hub) -> None:
    code = new_code()
    assert hub.submit(dossier(code)).status_code == 202
    answer = hub.http.get(f"/v1/dossiers/{code}/timeline", headers=hub.headers)
    assert answer.status_code == 200
    body = answer.json()
    assert body["dossier_code"] == code
    assert [e["event_type"] for e in body["entries"]] == [SUBMITTED]
    foreign = new_code("000.00.00.H41")
    problem(hub.http.get(f"/v1/dossiers/{foreign}/timeline", headers=hub.headers), 403,
            "client.access_denied", "code")
    problem(hub.http.get(f"/v1/dossiers/{code}/timeline"), 401, "client.unauthenticated", None)


@pytest.mark.parametrize("key", ["", "x" * 256, "a\tb"])
def test_an_empty_or_bad_idempotency_key_is_refused(hub: Hub, key: str) -> None:
    """The contract says minLength 1: an empty key is refused naming the header, not taken
    for no key (which would make the request idempotent by its signature instead)."""
    body = problem(hub.submit(dossier(new_code()), headers={"Idempotency-Key": key}), 422,
                   "client.schema_invalid", "Idempotency-Key")
    assert "1 to 255 printable characters" in body["message"]
    assert hub.outbox_count() == 0


def test_an_idempotency_key_beyond_ascii_is_refused(hub: Hub) -> None:
    """The document's pattern is printable ASCII; a header octet beyond it (obsolete in RFC
    9110) is refused, not read as Latin-1."""
    body = json.dumps(dossier(new_code())).encode()
    answer = hub.http.post("/v1/dossiers", content=body, headers={
        **hub.headers, "Content-Type": "application/json", "Idempotency-Key": "clé".encode(
            "latin-1"), "X-Signature": sign(hub.client_signer, body, SUBMITTED)})
    assert "beyond ASCII" in problem(answer, 422, "client.schema_invalid",
                                     "Idempotency-Key")["message"]


def test_a_good_idempotency_key_is_taken(hub: Hub) -> None:
    data = dossier(new_code())
    first = hub.submit(data, headers={"Idempotency-Key": "k-1"})
    again = hub.submit(data, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202, again.text
    assert again.json() == {"message_id": first.json()["message_id"], "duplicate": True}


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", "/v1/dossiers", "POST"),  # a plain ASGI intake route, placed first
    ("PUT", "/v1/dossiers/000.00.00.H56-250101-0001/status", "POST"),  # plain, with a code
    ("DELETE", "/v1/dossiers/000.00.00.H56-250101-0001/timeline", "GET"),  # FastAPI's
    ("POST", "/healthz", "GET"),
    ("TRACE", "/v1/oauth/token", "POST"),
])
def test_a_method_the_path_does_not_take_is_405_with_allow(hub: Hub, method: str, path: str,
                                                           allow: str) -> None:
    answer = hub.http.request(method, path, headers=hub.headers)
    body = problem(answer, 405, "client.method_not_allowed", None)
    assert answer.headers["Allow"] == allow
    assert allow in body["message"]


def test_unknown_paths_and_methods(hub: Hub) -> None:
    problem(hub.http.get("/v2/dossiers"), 404, "client.not_found", None)
    problem(hub.http.get("/v1/dossiers"), 405, "client.method_not_allowed", None)


def test_operations_routes(hub: Hub) -> None:
    assert hub.http.get("/healthz").json() == {"status": "ok"}
    ready = hub.http.get("/readyz")
    # No relay in this hub: the broker is not connected, the store is.
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert {k: checks[k] for k in ("store", "broker")} == {"store": "ok",
                                                          "broker": "not connected"}
    assert checks["keeper"].startswith("warning: ")  # no keeper here: said, not decisive
    assert hub.submit(dossier(new_code())).status_code == 202
    hub.submit(dossier("bad"))
    text = hub.http.get("/metrics").text
    assert 'lienthong_http_requests_total{method="POST",route="/v1/dossiers",status="202"} 1.0' \
        in text
    assert 'route="/v1/dossiers",status="422"' in text
    assert 'lienthong_intake_seconds_count{type="vn.gov.dossier.submitted"} 1.0' in text
    assert "lienthong_outbox_depth 1.0" in text


def test_the_upstream_proof_is_checked_with_the_request_body(
        make_hub: Callable[..., Hub], settings: Settings) -> None:
    """What docs/architecture.md says of lt-upstream-proof, on a message taken off the broker:
    stock joserfc verifies it against the upstream's certificate with the exact request body
    as the detached payload; with what the message carries instead (the canonical data) it
    does not verify: the proof is evidence for whoever holds the request, not a check a
    receiver can make alone."""
    queue = declare_events(settings.amqp_url, settings.name_prefix)
    hub = make_hub(settings=settings, relay=True, relay_poll_interval=0.2)
    wait_for(lambda: hub.http.get("/readyz").status_code == 200, message="relay connected")
    # Spelt as a client may: its own member order and spacing, no optional member.
    sent = json.dumps(dossier(new_code()), ensure_ascii=False, indent=1).encode()
    assert hub.submit({}, raw=sent).status_code == 202
    [(props, body)] = wait_for(lambda: drain(settings.amqp_url, queue), message="publication")
    env = Envelope.from_bytes(body)
    proof = props.headers[UPSTREAM_PROOF]
    assert proof.split(".")[1] == ""  # detached: the proof alone carries no payload
    certificate = hub.keys.client.certificate
    assert certificate is not None
    key = ECKey.import_key(certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    # The lt-* header parameters are the hub's: a stock verifier lets them through.
    stock = jws.JWSRegistry(strict_check_header=False)
    verified = jws.deserialize_compact(proof, key, algorithms=["ES256"], payload=sent,
                                       registry=stock)
    header = verified.headers()
    assert (header["lt-src"], header["lt-type"]) == (env.source, env.type)
    assert header["kid"] == kid_of(certificate) and header["b64"] is False
    # The receiver has the envelope, whose data is the hub's canonical form of the request.
    assert env.data != json.loads(sent)  # defaults filled in
    for carried in (json.dumps(env.data, ensure_ascii=False).encode(), body):
        with pytest.raises(BadSignatureError):
            jws.deserialize_compact(proof, key, algorithms=["ES256"], payload=carried,
                                    registry=stock)
