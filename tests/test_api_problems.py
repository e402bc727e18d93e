"""The problem body every refusal is sent as: RFC 9457 fields plus the hub's code, message,
field and origin, rendered as UTF-8 JSON whatever its strings hold."""

from __future__ import annotations

import json

from fastapi import FastAPI
from fastapi.testclient import TestClient

from hub.api import problems
from hub.api.problems import PROBLEM_JSON, problem_response
from hub.errors import HubError, ValidationError

SURROGATES = ValidationError("quotes \udfff, a lone surrogate", field="x\ud800")


def test_a_problem_is_rfc_9457_plus_the_hub_fields() -> None:
    answer = problem_response(ValidationError("is missing", field="code"), "/v1/dossiers")
    assert answer.status_code == 422 and answer.media_type == PROBLEM_JSON
    assert json.loads(answer.body) == {
        "type": "urn:lienthong:error:client.schema_invalid", "title": "Unprocessable Entity",
        "status": 422, "detail": "code: is missing", "instance": "/v1/dossiers",
        "code": "client.schema_invalid", "message": "is missing", "origin": "hub",
        "field": "code"}


def test_a_lone_surrogate_is_written_as_its_escape_text() -> None:
    """UTF-8 cannot carry a lone surrogate: rendering it as such failed, and the refusal became
    a 500. It is written as the text of its escape, so the body is valid UTF-8 and valid
    Unicode (a strict JSON parser refuses an escaped lone surrogate too)."""
    answer = problem_response(SURROGATES, "/v1/\udc00")
    body = json.loads(answer.body.decode("utf-8"))
    assert body["message"] == "quotes \\udfff, a lone surrogate"
    assert body["field"] == "x\\ud800" and body["instance"] == "/v1/\\udc00"
    assert body["detail"] == "x\\ud800: quotes \\udfff, a lone surrogate"
    # Ordinary text beyond ASCII is kept as it is, unescaped.
    plain = problem_response(ValidationError("không hợp lệ 😀", field="tên"))
    assert "không hợp lệ 😀".encode() in plain.body and "tên".encode() in plain.body


def test_a_refusal_naming_a_surrogate_reaches_the_client() -> None:
    app = FastAPI()
    problems.install(app)

    @app.get("/refuse")
    async def refuse() -> None:
        raise SURROGATES

    @app.get("/fail")
    async def fail() -> None:
        raise HubError("the hub failed on \udfff")

    with TestClient(app) as http:
        answer = http.get("/refuse")
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == PROBLEM_JSON
        assert (answer.json()["code"], answer.json()["field"]) == ("client.schema_invalid",
                                                                   "x\\ud800")
        answer = http.get("/fail")
        assert answer.status_code == 500 and answer.json()["code"] == "server.internal"
        assert answer.json()["message"] == "the hub failed on \\udfff"
