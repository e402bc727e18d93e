"""The console's API and pages through the real door, `lienthong serve` on a socket, on both
stores and RabbitMQ: browse and filter with counts and paging, inspect (masked for a viewer, the
signature's status, the timeline), replay once (to the dossier's partition of the work queue,
fresh attempt counter, linked), replay twice refused, edit and resubmit re-signed by the hub,
discard with a reason, roles, sessions that expire, CSRF, the audit trail and its chain."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from test_api_support import Keys, keys_fixture  # noqa: F401
from typer.testing import CliRunner

from hub import headers as h
from hub.broker import declare
from hub.broker.destinations import discover_destinations
from hub.broker.names import Names, slot_of
from hub.broker.topology import Topology
from hub.cli import app as cli
from hub.console.accounts import Accounts
from hub.console.deadletters import row_of
from hub.envelope import Envelope
from hub.runtime import queue_verifier
from hub.settings import Settings
from hub.signing import Signer, TrustStore, generate
from hub.simulation import free_port
from hub.store import Store
from hub.store.tables import operator_sessions
from hub.testing.broker import delete_queues, read_all, sample_envelope
from hub.testing.processes import serving
from hub.testing.store import scratch_url

PASSWORD = "correct horse battery"
CITIZEN_ID = "001090012345"


def basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()}


def parked_row(settings: Settings, env: Envelope, signer: Signer, *, code: str,
               reason: str, destination: str = "npsp", queue: str = "dead",
               history_at: str | None = None) -> dict[str, Any]:
    # Parked now unless told: the console counts what was parked in the last hour.
    history_at = history_at or datetime.now(UTC).isoformat(timespec="seconds")
    body = env.to_bytes()
    headers = {h.SIGNATURE: signer.sign(body, env), h.ATTEMPT: 3, h.SLOT: slot_of(env.subject),
               h.REASON_CODE: code, h.REASON: reason, h.PARKED_BY: f"worker:{destination}",
               h.PARKED_AT: history_at, h.LAST_ERROR: f"{code}: {reason}",
               h.HISTORY: [{"attempt": i, "code": code, "message": reason, "at": history_at}
                           for i in range(4)]}
    names = Names(settings.name_prefix)
    return row_of(queue, getattr(names, queue), names, message_id=env.id, app_id=env.source,
                  type=env.type, raw_headers=headers, body=body, now=datetime.now(UTC))


@dataclass
class Served:
    """`lienthong serve` on a socket, its store, and an HTTP client keeping its cookies."""

    settings: Settings
    store: Store
    http: httpx.Client


@pytest.fixture
def console(settings: Settings, store_url: str, keys: Keys, tmp_path: Path
            ) -> Iterator[tuple[Served, Topology, Signer]]:
    keys.hub.save(settings.keys_dir, overwrite=True)
    trust = TrustStore(settings.trust_dir)
    for material in (keys.client, keys.hub):
        trust.add(material.certificate_pem())
    # A database of its own: counts and operators' names are the test's alone.
    with scratch_url(store_url, tmp_path) as url:
        yield from _console(settings, url, keys)


def _console(settings: Settings, store_url: str, keys: Keys
             ) -> Iterator[tuple[Served, Topology, Signer]]:
    store = Store.open(store_url)
    accounts = Accounts(store)
    accounts.add("ana", PASSWORD, "operator")
    accounts.add("vic", PASSWORD, "viewer")
    installed, _ = discover_destinations()
    topology = Topology.from_settings(settings, installed)
    declare.apply(topology, settings.broker_urls)
    env = {**os.environ, "LIENTHONG_DATA_DIR": str(settings.data_dir),
           "LIENTHONG_AMQP_URL": settings.amqp_url, "LIENTHONG_NAME_PREFIX": settings.name_prefix,
           "LIENTHONG_STORE_URL": store_url}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()
    command = [sys.executable, "-c", "from hub.cli import main; main()", "serve", "--port",
               str(port), "--log-level", "warning"]
    try:
        # Redirects followed, as a browser (and the ASGI test client) does.
        with serving(command, port, timeout=60, env=env) as base, \
                httpx.Client(base_url=base, timeout=30, follow_redirects=True) as http:
            yield Served(settings, store, http), topology, keys.signer(keys.client)
    finally:
        store.close()
        delete_queues(settings.amqp_url, [q.name for q in topology.queues])


def keep(hub: Served, row: dict[str, Any]) -> int:
    with hub.store.begin() as tx:
        new = tx.dead_letter_add(**row)
    assert new is not None
    return new


def dossier_env(i: int) -> Envelope:
    env = sample_envelope(i)
    env.data["applicant"] = {"identity_number": CITIZEN_ID, "name": "Nguyễn Văn An"}
    return env


def test_browse_filter_count_page_and_inspect(console: tuple[Served, Topology, Signer],
                                              keys: Keys) -> None:
    hub, _, signer = console
    forger = generate(signer.system_id)
    assert forger.certificate is not None
    forged_signer = Signer(forger.private_key, forger.certificate)
    refused = [keep(hub, parked_row(hub.settings, dossier_env(i), signer,
                                    code="system.rejected", reason="portal said 400"))
               for i in range(1, 4)]
    forged = keep(hub, parked_row(hub.settings, dossier_env(9), forged_signer,
                                  code="client.bad_signature", reason="bad", queue="invalid",
                                  destination="postal"))
    http = hub.http

    assert http.get("/v1/console/dead-letters").status_code == 401
    page = http.get("/v1/console/dead-letters", params={"limit": 2}, headers=basic("vic"))
    assert page.status_code == 200, page.text
    doc = page.json()
    assert doc["total"] == 4 and len(doc["items"]) == 2
    assert doc["counts"] == {"refused": 3, "invalid signature": 1}
    rest = http.get("/v1/console/dead-letters", params={"limit": 2, "offset": 2},
                    headers=basic("vic")).json()
    assert {d["id"] for d in doc["items"] + rest["items"]} == {*refused, forged}
    only = http.get("/v1/console/dead-letters", params={"kind": "invalid signature"},
                    headers=basic("vic")).json()
    assert [d["id"] for d in only["items"]] == [forged]
    by_dest = http.get("/v1/console/dead-letters", params={"destination": "postal"},
                       headers=basic("vic")).json()
    assert [d["id"] for d in by_dest["items"]] == [forged]
    by_dossier = http.get("/v1/console/dead-letters",
                          params={"dossier_code": dossier_env(2).subject},
                          headers=basic("vic")).json()
    assert [d["dossier_code"] for d in by_dossier["items"]] == [dossier_env(2).subject]
    old = http.get("/v1/console/dead-letters", params={"older_than_minutes": 10**6},
                   headers=basic("vic")).json()
    assert old["total"] == 0

    seen = http.get(f"/v1/console/dead-letters/{refused[0]}", headers=basic("vic")).json()
    assert seen["masked"] is True
    assert CITIZEN_ID not in json.dumps(seen) and "Nguyễn" not in json.dumps(seen)
    assert seen["envelope"]["data"]["applicant"]["identity_number"] == "0010******45"
    assert seen["signature"].startswith("valid: signed by " + signer.system_id)
    assert len(seen["history"]) == 4 and seen["reason_code"] == "system.rejected"
    full = http.get(f"/v1/console/dead-letters/{refused[0]}", headers=basic("ana")).json()
    assert full["masked"] is False
    assert full["envelope"]["data"]["applicant"]["identity_number"] == CITIZEN_ID
    bad = http.get(f"/v1/console/dead-letters/{forged}", headers=basic("ana")).json()
    assert bad["signature"].startswith("invalid: client.")
    assert http.get("/v1/console/dead-letters/999999", headers=basic("ana")).status_code == 404


def test_replay_once_edit_discard_and_the_audit(console: tuple[Served, Topology, Signer],
                                                settings: Settings, tmp_path: Path) -> None:
    hub, topology, signer = console
    http = hub.http
    first_env, second_env, third_env = dossier_env(11), dossier_env(12), dossier_env(13)
    first = keep(hub, parked_row(settings, first_env, signer, code="system.rejected",
                                 reason="refused"))
    second = keep(hub, parked_row(settings, second_env, signer, code="system.rejected",
                                  reason="MaHoSo wrong"))
    third = keep(hub, parked_row(settings, third_env, signer, code="system.rejected",
                                 reason="duplicate"))

    # A viewer may look, not act.
    denied = http.post(f"/v1/console/dead-letters/{first}/replay", json={},
                       headers=basic("vic"))
    assert denied.status_code == 403

    done = http.post(f"/v1/console/dead-letters/{first}/replay", json={"why": "portal back"},
                     headers=basic("ana"))
    assert done.status_code == 200, done.text
    again = http.post(f"/v1/console/dead-letters/{first}/replay", json={},
                      headers=basic("ana"))
    assert again.status_code == 409  # the mistake is refused, nothing sent
    queues = topology.work_queues("npsp")
    expected = queues[slot_of(first_env.subject) % len(queues)]
    [copy] = read_all(settings.amqp_url, expected)
    assert copy.message_id == first_env.id and copy.body == first_env.to_bytes()
    assert copy.headers[h.ATTEMPT] == 0 and copy.headers[h.REPLAY_OF] == first
    assert h.HISTORY not in copy.headers and h.REASON not in copy.headers

    corrected = dict(second_env.data, note="fixed by operator")
    edited = http.post(f"/v1/console/dead-letters/{second}/edit",
                       json={"data": corrected, "why": "MaHoSo corrected"},
                       headers=basic("ana"))
    assert edited.status_code == 200, edited.text
    queue = queues[slot_of(second_env.subject) % len(queues)]
    [resubmitted] = read_all(settings.amqp_url, queue)
    env = Envelope.from_bytes(resubmitted.body)
    assert env.id == second_env.id and env.data == corrected
    key = queue_verifier(settings).verify(resubmitted.body, resubmitted.headers[h.SIGNATURE],
                                          env)
    assert key.system_id == settings.hub_id  # re-signed by the hub itself
    assert resubmitted.headers[h.EDITED] == "ana"
    kept = hub.store.dead_letter(second)
    assert kept is not None and kept.state == "edited" and kept.body == second_env.to_bytes()

    no_reason = http.post(f"/v1/console/dead-letters/{third}/discard", json={"why": ""},
                          headers=basic("ana"))
    assert no_reason.status_code == 400
    assert http.post(f"/v1/console/dead-letters/{third}/discard", json={"why": "duplicate"},
                     headers=basic("ana")).status_code == 200

    trail = http.get("/v1/console/audit", headers=basic("vic")).json()
    assert trail["chain"]["ok"] is True
    actions = {(e["action"], e["target"], e["actor"], e["why"]) for e in trail["entries"]}
    assert ("replay", f"dead-letter:{first}", "ana", "portal back") in actions
    assert ("discard", f"dead-letter:{third}", "ana", "duplicate") in actions
    [edit_entry] = [e for e in trail["entries"] if e["action"] == "edit"]
    assert edit_entry["detail"]["diff"] == [{"path": "/note", "before": None,
                                             "after": "fixed by operator"}]

    env_vars = {"LIENTHONG_DATA_DIR": str(settings.data_dir),
                "LIENTHONG_STORE_URL": str(hub.store.engine.url.render_as_string(
                    hide_password=False)),
                "LIENTHONG_NAME_PREFIX": settings.name_prefix}
    exported = CliRunner().invoke(cli, ["audit", "export"], env=env_vars)
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in exported.output.splitlines()]
    assert [e["action"] for e in lines][-3:] == ["replay", "edit", "discard"]
    assert all(e["row_hash"] for e in lines)
    verified = CliRunner().invoke(cli, ["audit", "verify"], env=env_vars)
    assert verified.exit_code == 0 and "intact" in verified.output


def test_sessions_expire_and_cookies_need_the_csrf_token(
        console: tuple[Served, Topology, Signer]) -> None:
    hub, _, signer = console
    http = hub.http
    letter = keep(hub, parked_row(hub.settings, dossier_env(21), signer,
                                  code="system.rejected", reason="x"))
    wrong = http.post("/v1/console/sessions", json={"username": "ana", "password": "nope"})
    assert wrong.status_code == 401
    signed = http.post("/v1/console/sessions", json={"username": "ana", "password": PASSWORD})
    assert signed.status_code == 201
    session = signed.json()
    bearer = {"Authorization": f"Bearer {session['token']}"}
    assert http.get("/v1/console/dead-letters", headers=bearer).status_code == 200

    # The pages' cookie: a change without the session's CSRF token is refused.
    http.cookies.set("lt_console", session["token"])
    try:
        forged = http.post(f"/v1/console/dead-letters/{letter}/discard", json={"why": "x"})
        assert forged.status_code == 403 and forged.json()["code"] == "client.csrf"
        ok = http.post(f"/v1/console/dead-letters/{letter}/discard", json={"why": "x"},
                       headers={"X-CSRF-Token": session["csrf"]})
        assert ok.status_code == 200
    finally:
        http.cookies.clear()

    with hub.store.begin() as tx:
        tx.connection.execute(update(operator_sessions).values(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert http.get("/v1/console/dead-letters", headers=bearer).status_code == 401


def test_the_pages_sign_in_filter_inspect_and_act(console: tuple[Served, Topology, Signer]
                                                  ) -> None:
    hub, _, signer = console
    http = hub.http
    letter = keep(hub, parked_row(hub.settings, dossier_env(31), signer,
                                  code="system.rejected", reason="portal said no"))
    assert http.get("/console", follow_redirects=False).status_code == 303
    login = http.get("/console/login?lang=en")
    assert "Sign in" in login.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
    assert csrf is not None
    refused = http.post("/console/login", data={"csrf": "wrong", "username": "ana",
                                                 "password": PASSWORD}, follow_redirects=False)
    assert "error=1" in refused.headers["location"]
    signed = http.post("/console/login", data={"csrf": csrf.group(1), "username": "ana",
                                                "password": PASSWORD})
    assert signed.status_code == 200 and "Dead letters" in signed.text
    assert "Alert thresholds" in signed.text
    vi = http.get("/console?lang=vi")
    assert "Thư lỗi" in vi.text
    # The header names the operator's role in the page's language, not by its stored code.
    assert "Vai trò: người vận hành" in vi.text
    listed = http.get("/console", params={"kind": "refused", "lang": "en"})
    assert f'href="/console/dead-letters/{letter}"' in listed.text
    detail = http.get(f"/console/dead-letters/{letter}")
    assert "portal said no" in detail.text and CITIZEN_ID in detail.text
    token = re.search(r'name="csrf" value="([^"]+)"', detail.text)
    assert token is not None
    no_token = http.post(f"/console/dead-letters/{letter}/discard", data={"why": "x"})
    assert "client.csrf" in no_token.text
    discarded = http.post(f"/console/dead-letters/{letter}/discard",
                          data={"why": "test", "csrf": token.group(1)})
    assert "discarded" in discarded.text
    assert f'href="/console/dead-letters/{letter}"' not in discarded.text
    audit = http.get("/console/audit")
    assert "discard" in audit.text and "intact" in audit.text


def test_replay_everything_a_filter_matches(console: tuple[Served, Topology, Signer],
                                            settings: Settings) -> None:
    hub, topology, signer = console
    envs = [dossier_env(i) for i in (61, 62, 63)]
    ids = [keep(hub, parked_row(settings, e, signer, code="system.rejected", reason="r",
                                destination="npsp" if i < 2 else "postal"))
           for i, e in enumerate(envs)]
    done = hub.http.post("/v1/console/replays",
                         json={"filter": {"destination": "npsp"}, "why": "portal back"},
                         headers=basic("ana"))
    assert done.status_code == 200, done.text
    assert done.json()["replayed"] == 2
    assert {r["id"] for r in done.json()["results"]} == set(ids[:2])
    queues = topology.work_queues("npsp")
    got = {r.message_id for q in set(queues) for r in read_all(settings.amqp_url, q)}
    assert got == {envs[0].id, envs[1].id}
    left = hub.http.get("/v1/console/dead-letters", headers=basic("ana")).json()
    assert [d["id"] for d in left["items"]] == [ids[2]]
    selection = hub.http.post("/v1/console/replays", json={"ids": [ids[0], ids[2]]},
                              headers=basic("ana")).json()
    assert [(r["id"], r["ok"]) for r in selection["results"]] == [(ids[0], False),
                                                                   (ids[2], True)]
