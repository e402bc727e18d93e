"""The AsyncAPI 3.0 document, served by `lienthong serve` on a socket and written by the
command line: valid against the official AsyncAPI 3.0.0 JSON Schema, with a message for every
event the hub can publish, each subscription's channel, and the REST contracts' own schemas."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from subscriptions_support import BHXH, H56, HOTICH, drop_users, make_hub
from typer.testing import CliRunner

from hub.cli import app as cli
from hub.model import EVENT_MODELS
from hub.settings import PROJECT_ROOT, Settings
from hub.store import Store
from hub.subscriptions import service
from hub.testing.waiting import wait_for

SPEC = json.loads((PROJECT_ROOT / "schemas" / "asyncapi" / "asyncapi-3.0.0.json").read_text())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[str, Settings]]:
    hub = make_hub(settings)
    s = hub.settings
    with Store.open(s.store_url) as store:
        service.add(s, store, "bhxh", BHXH, ["vn.gov.dossier.submitted",
                                             "vn.gov.dossier.status-changed"], [H56], [])
        service.add(s, store, "hotich", HOTICH, ["vn.gov.dossier.submitted"], [H56], [])
    port = _free_port()
    env = {**os.environ, "LIENTHONG_DATA_DIR": str(s.data_dir), "LIENTHONG_AMQP_URL": s.amqp_url,
           "LIENTHONG_NAME_PREFIX": s.name_prefix}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from hub.cli import main; main()", "serve", "--port",
         str(port), "--workers", "1", "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read().decode() if proc.stdout else "exited")
        try:
            return httpx.get(f"{base}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=60, message="lienthong serve")
        yield base, s
    finally:
        proc.terminate()
        proc.wait(30)
        drop_users(s)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_served_document_is_valid_asyncapi_3_and_complete(
        served: tuple[str, Settings]) -> None:
    base, s = served
    answer = httpx.get(f"{base}/asyncapi.json")
    assert answer.status_code == 200
    doc = answer.json()
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}"
              for e in jsonschema.Draft7Validator(SPEC).iter_errors(doc)]
    assert errors == []
    # The schema does catch a broken document (the validation is not vacuous).
    broken = {**doc, "info": {"title": "x"}}
    assert list(jsonschema.Draft7Validator(SPEC).iter_errors(broken))
    for ref in set(_refs(doc)):
        assert ref.startswith("#/"), ref
        _resolve(doc, ref)  # every reference lands
    # Every event the hub can publish has a message, on the events exchange's channel.
    messages = doc["components"]["messages"]
    assert {m["name"] for m in messages.values()} == set(EVENT_MODELS)
    events = doc["channels"]["events"]
    assert events["address"] == f"{s.name_prefix}.events"
    assert events["bindings"]["amqp"]["exchange"]["type"] == "topic"
    assert len(events["messages"]) == len(EVENT_MODELS)
    # Each subscription: its queue, its types only, its routing keys and projection.
    bhxh = doc["channels"]["subscription-bhxh"]
    assert bhxh["address"] == f"{s.name_prefix}.sub.bhxh"
    assert bhxh["bindings"]["amqp"]["queue"]["name"] == bhxh["address"]
    assert {m["name"] for m in bhxh["messages"].values()} == {
        "vn.gov.dossier.submitted", "vn.gov.dossier.status-changed"}
    assert bhxh["x-lienthong-routing-keys"] == ["dossier.status-changed.000_00_00_H56.*",
                                                "dossier.submitted.000_00_00_H56.*"]
    assert "applicant.name" in bhxh["x-lienthong-projection"]["removed"][
        "vn.gov.dossier.submitted"]
    assert doc["operations"]["receive-hotich"]["action"] == "receive"
    # One source: the data of a REST event is the REST contract's own schema.
    contract = json.loads((PROJECT_ROOT / "schemas" / "api" / "dossier-submission.schema.json")
                          .read_text())
    submitted = messages["dossier-submitted"]
    data_ref = submitted["payload"]["allOf"][1]["properties"]["data"]["$ref"]
    data = _resolve(doc, data_ref)
    assert data["required"] == contract["required"]
    assert set(data["properties"]) == set(contract["properties"])
    # Headers: the signature and how to verify it; sequence a 19-digit string.
    header = _resolve(doc, submitted["headers"]["$ref"])["properties"]["lt-signature"]
    assert "RFC 7797" in header["description"] and "kid" in header["description"]
    assert submitted["payload"]["allOf"][1]["properties"]["sequence"]["type"] == "string"
    assert "sequence" in submitted["description"]
    # The YAML is the same document; the command line writes the same document.
    as_yaml = httpx.get(f"{base}/asyncapi.yaml")
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.text) == doc
    out = s.data_dir / "asyncapi.json"
    env = {"LIENTHONG_DATA_DIR": str(s.data_dir), "LIENTHONG_AMQP_URL": s.amqp_url,
           "LIENTHONG_NAME_PREFIX": s.name_prefix}
    result = CliRunner().invoke(cli, ["subscriptions", "asyncapi", "-o", str(out)], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(Path(out).read_text()) == doc
    # The OpenAPI document lists both routes as open.
    openapi = httpx.get(f"{base}/openapi.json").json()
    for path in ("/asyncapi.json", "/asyncapi.yaml"):
        assert openapi["paths"][path]["get"]["security"] == []
