"""The intake service on both stores: accepted means kept (outbox, log, timeline in one
transaction), idempotent resubmission, sequences and status transitions."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select
from test_api_support import (  # noqa: F401 - fixtures
    CLIENT_ID,
    PROGRESS,
    STATUS,
    SUBMITTED,
    Hub,
    dossier,
    keys_fixture,
    make_hub_fixture,
    new_code,
    sign,
)

from hub.envelope import Envelope
from hub.errors import AccessDenied, HubError, ValidationError
from hub.intake import tables as intake_tables
from hub.intake.drafts import UPSTREAM_PROOF
from hub.intake.errors import IdempotencyConflict
from hub.intake.idempotency import SIGNED_KEY_PREFIX, signed_request_key
from hub.intake.jobs import Accepted
from hub.intake.service import IntakeService
from hub.signing.truststore import TrustStore
from hub.signing.verifier import Verifier
from hub.testing.waiting import wait_for


@pytest.fixture
def hub(make_hub: Callable[..., Hub], store_url: str) -> Hub:
    return make_hub(store_url)


def intake(hub: Hub) -> IntakeService:
    service = hub.app.state.hub.intake
    assert isinstance(service, IntakeService)
    return service


def client(hub: Hub) -> Any:
    return hub.registry.authenticate(hub.headers)


def test_accepted_means_kept(hub: Hub) -> None:
    code = new_code()
    answer = hub.submit(dossier(code))
    assert answer.status_code == 202, answer.text
    message_id = answer.json()["message_id"]
    assert answer.json()["duplicate"] is False

    [item] = [i for i in hub.store.outbox_pending(1000, lease=None) if i.message_id == message_id]
    assert item.exchange == f"{hub.settings.name_prefix}.events"
    assert item.routing_key == "dossier.submitted.000_00_00_H56.2_002492"
    env = Envelope.from_bytes(item.body)
    assert env.id == message_id and env.subject == code and env.sequence == 1
    assert env.source == CLIENT_ID  # the true origin; the hub signs as a relay
    assert env.extensions["upstream"] == CLIENT_ID
    assert env.data["applicant"]["identity_number"] == "001099012345"
    # Signed by the hub, verifiable by any consumer that trusts the hub's certificate.
    trust = TrustStore(hub.settings.data_dir / "hub-trust")
    trust.add(hub.keys.hub.certificate_pem())
    Verifier(trust, max_age=60, clock_skew=5, retry_grace=0,
             relays=frozenset({hub.settings.hub_id})).verify(
        item.body, item.headers["lt-signature"], env)
    assert item.headers[UPSTREAM_PROOF].count(".") == 2

    [entry] = hub.store.timeline(code)
    assert (entry.message_id, entry.event_type, entry.source) == (message_id, SUBMITTED,
                                                                   CLIENT_ID)
    assert entry.summary["procedure_code"] == "2.002492"
    assert "applicant" not in entry.summary  # personal data stays out of the timeline
    [row] = [r for r in hub.store.log_rows(subject=code)]
    assert (row.direction, row.message_id, row.peer) == ("in", message_id, CLIENT_ID)
    assert hub.store.verify_log().ok


def test_idempotent_resubmission(hub: Hub) -> None:
    code = new_code()
    before = hub.outbox_count()
    first = hub.submit(dossier(code), headers={"Idempotency-Key": f"k-{code}"})
    # A new signature (new request id) but the same key and the same body.
    again = hub.submit(dossier(code), headers={"Idempotency-Key": f"k-{code}"})
    assert first.status_code == again.status_code == 202
    assert again.json() == {"message_id": first.json()["message_id"], "duplicate": True}
    assert hub.outbox_count() == before + 1
    assert len(hub.store.timeline(code)) == 1

    conflict = hub.submit(dossier(code, channel=1), headers={"Idempotency-Key": f"k-{code}"})
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "client.idempotency_conflict"
    assert conflict.json()["field"] == "Idempotency-Key"
    assert hub.outbox_count() == before + 1


def test_exact_resend_without_key_is_one_message(hub: Hub) -> None:
    code = new_code()
    body = json.dumps(dossier(code)).encode()
    from test_api_support import sign

    token = sign(hub.client_signer, body, SUBMITTED)
    first = hub.submit({}, raw=body, token=token)
    again = hub.submit({}, raw=body, token=token)
    assert first.status_code == again.status_code == 202
    assert again.json()["message_id"] == first.json()["message_id"]
    assert again.json()["duplicate"] is True
    assert len(hub.store.timeline(code)) == 1
    # The same request id over another body is a replay.
    replay = hub.submit({}, raw=json.dumps(dossier(new_code())).encode(),
                        token=sign(hub.client_signer, body, SUBMITTED))
    assert replay.status_code == 400 and replay.json()["code"] == "client.bad_signature"


def test_concurrent_same_key_gives_one_message(hub: Hub) -> None:
    service = intake(hub)
    code = new_code()
    who = client(hub)
    results: list[Accepted] = []

    def send() -> None:
        results.append(service.accept(who, SUBMITTED, dossier(code),
                                      idempotency_key=f"same-{code}", upstream_proof=None))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answers = [r for r in results if isinstance(r, Accepted)]
    assert len(answers) == 6, results
    assert len({r.message_id for r in answers}) == 1
    assert sorted(r.duplicate for r in answers) == [False] + [True] * 5
    assert len(hub.store.timeline(code)) == 1


def test_sequences_and_procedure_follow_the_dossier(hub: Hub) -> None:
    code = new_code()
    assert hub.submit(dossier(code)).status_code == 202
    for status, at in ((2, "09:00"), (4, "10:00")):
        answer = hub.post(f"/v1/dossiers/{code}/status",
                          {"status": status, "at": f"2025-01-01T{at}:00"}, STATUS)
        assert answer.status_code == 202, answer.text
    step = {"officer": "Trần B", "content": "thẩm định", "status": 4, "at": "2025-01-01T11:00:00"}
    assert hub.post(f"/v1/dossiers/{code}/progress", step, PROGRESS).status_code == 202
    envs = [Envelope.from_bytes(i.body) for i in hub.store.outbox_pending(1000, lease=None)]
    mine = [e for e in envs if e.subject == code]
    assert [e.sequence for e in mine] == [1, 2, 3, 4]
    # Status events carry no procedure; the hub remembers it from the submission.
    assert {e.procedure for e in mine} == {"2.002492"}
    assert mine[1].data["at"] == "2025-01-01T09:00:00+07:00"  # naive means Vietnam time
    assert [e.event_type for e in hub.store.timeline(code)] == [SUBMITTED, STATUS, STATUS,
                                                                 PROGRESS]


def test_impossible_transitions_are_refused(hub: Hub) -> None:
    code = new_code()
    assert hub.submit(dossier(code)).status_code == 202
    bad = hub.post(f"/v1/dossiers/{code}/status", {"status": 10, "at": "2025-01-02T08:00:00"},
                   STATUS)
    assert bad.status_code == 422
    assert (bad.json()["code"], bad.json()["field"]) == ("client.bad_transition", "status")
    assert "allowed next statuses" in bad.json()["message"]
    # Nothing of the refused event was kept.
    assert len(hub.store.timeline(code)) == 1
    unknown = new_code()
    bad = hub.post(f"/v1/dossiers/{unknown}/status",
                   {"status": 9, "previous_status": 1, "at": "2025-01-02T08:00:00"}, STATUS)
    assert bad.status_code == 422 and bad.json()["code"] == "client.bad_transition"


def test_service_validates_and_authorizes(hub: Hub) -> None:
    service = intake(hub)
    who = client(hub)
    with pytest.raises(ValidationError) as info:
        service.accept(who, SUBMITTED, {**dossier(new_code()), "channel": 9},
                       idempotency_key=None, upstream_proof=None)
    assert info.value.field == "channel"
    with pytest.raises(AccessDenied):
        service.accept(who, SUBMITTED, dossier(new_code("000.00.00.H41"),
                                               agency_code="000.00.00.H41"),
                       idempotency_key=None, upstream_proof=None)
    with pytest.raises(ValidationError) as info:
        service.accept(who, SUBMITTED, dossier(new_code()), idempotency_key="",
                       upstream_proof=None)
    assert info.value.field == "Idempotency-Key"
    key = f"svc-{new_code()}"  # of this test only: a PostgreSQL database is the session's
    accepted = service.accept(who, SUBMITTED, dossier(new_code()), idempotency_key=key,
                              upstream_proof="<digest>")
    with pytest.raises(IdempotencyConflict):
        service.accept(who, SUBMITTED, dossier(new_code()), idempotency_key=key,
                       upstream_proof=None)
    assert not accepted.duplicate


def test_a_dossier_moved_by_another_process_is_signed_with_its_true_sequence(
        hub: Hub, store_url: str) -> None:
    """Each process drafts and signs an event before it reaches the writer, for the dossier
    state it last saw; another worker process may have moved the dossier meanwhile. The
    writer must then sign again with the sequence the store holds."""
    first = intake(hub)
    # A second worker process: its own service (own writer, own memory of dossiers).
    second = IntakeService(hub.store, hub.keys.signer(hub.keys.hub), hub.settings)
    who = client(hub)
    code = new_code()
    try:
        first.accept(who, SUBMITTED, dossier(code), idempotency_key=None, upstream_proof=None)
        second.accept(who, STATUS, {"dossier_code": code, "status": 2,
                                    "at": "2025-01-01T09:00:00"},
                      idempotency_key=None, upstream_proof=None)
        # The first process still remembers sequence 1 for this dossier.
        first.accept(who, STATUS, {"dossier_code": code, "status": 4,
                                   "at": "2025-01-01T10:00:00"},
                     idempotency_key=None, upstream_proof=None)
    finally:
        second.close()
    trust = TrustStore(hub.settings.data_dir / "hub-trust-seq")
    trust.add(hub.keys.hub.certificate_pem())
    verifier = Verifier(trust, max_age=60, clock_skew=5, retry_grace=0,
                        relays=frozenset({hub.settings.hub_id}))
    mine = [i for i in hub.store.outbox_pending(1000, lease=None)
            if Envelope.from_bytes(i.body).subject == code]
    envs = [Envelope.from_bytes(i.body) for i in mine]
    assert [e.sequence for e in envs] == [1, 2, 3]
    assert {e.procedure for e in envs} == {"2.002492"}
    for item, env in zip(mine, envs, strict=True):
        verifier.verify(item.body, item.headers["lt-signature"], env)  # signed as kept
        assert item.routing_key.endswith(".000_00_00_H56.2_002492")


def test_refused_and_accepted_in_one_batch(hub: Hub) -> None:
    """Jobs of one batch are checked one after the other: a refusal writes nothing and does
    not stop the others, and a later job sees what an earlier one of the batch wrote."""
    service = intake(hub)
    who = client(hub)
    code, other = new_code(), new_code()
    outcomes: list[Accepted | Exception] = []
    lock = threading.Lock()

    def send(event_type: str, data: dict[str, Any], key: str | None) -> None:
        try:
            result: Accepted | Exception = service.accept(
                who, event_type, data, idempotency_key=key, upstream_proof=None)
        except Exception as exc:  # the outcome is what is checked
            result = exc
        with lock:
            outcomes.append(result)

    before = hub.outbox_count()
    send(SUBMITTED, dossier(code), None)
    threads = [
        threading.Thread(target=send, args=(STATUS, {"dossier_code": code, "status": 10,
                                                     "at": "2025-01-02T08:00:00"}, None)),
        threading.Thread(target=send, args=(SUBMITTED, dossier(other), f"batch-{other}")),
        threading.Thread(target=send, args=(SUBMITTED, dossier(other), f"batch-{other}")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    refused = [o for o in outcomes if isinstance(o, Exception)]
    accepted = [o for o in outcomes if isinstance(o, Accepted)]
    assert [getattr(e, "code", None) for e in refused] == ["client.bad_transition"]
    assert sorted(a.duplicate for a in accepted) == [False, False, True]
    assert hub.outbox_count() == before + 2
    assert len(hub.store.timeline(code)) == 1 and len(hub.store.timeline(other)) == 1


def test_a_refused_new_dossier_leaves_no_row(hub: Hub) -> None:
    """On PostgreSQL the writer makes a row for each new dossier of a batch, to lock it; a
    dossier whose every job is refused must not keep it (nor anything else)."""
    unknown = new_code()
    bad = hub.post(f"/v1/dossiers/{unknown}/status",
                   {"status": 10, "previous_status": 1, "at": "2025-01-02T08:00:00"}, STATUS)
    assert bad.status_code == 422 and bad.json()["code"] == "client.bad_transition"
    with hub.store.engine.connect() as conn:
        left = conn.execute(select(func.count()).select_from(intake_tables.dossiers).where(
            intake_tables.dossiers.c.dossier_code == unknown)).scalar_one()
    assert left == 0
    assert hub.store.timeline(unknown) == []
    # The dossier is new for the next request, which starts its sequence at 1.
    assert hub.submit(dossier(unknown)).status_code == 202
    [item] = [i for i in hub.store.outbox_pending(1000, lease=None)
              if Envelope.from_bytes(i.body).subject == unknown]
    assert Envelope.from_bytes(item.body).sequence == 1


def test_a_request_the_store_refuses_fails_alone(hub: Hub) -> None:
    """A batch that fails for a value one job brought (here a time no database column can
    hold, slipped past validation) is written again job by job: the others are kept, the
    guilty one is answered with the hub's error and leaves nothing."""
    service = intake(hub)
    who = client(hub)
    outcomes: dict[str, Accepted | BaseException] = {}

    def job(name: str, code: str) -> Any:
        return service._prepare(who, SUBMITTED, dossier(code), None, None, None,
                                lambda outcome: outcomes.__setitem__(name, outcome))

    good, other, broken = new_code(), new_code(), new_code()
    first, second, bad = job("first", good), job("second", other), job("bad", broken)
    never = datetime.min.replace(tzinfo=timezone(timedelta(hours=14)))  # before year 1 in UTC
    bad = replace(bad, request=replace(bad.request, facts=replace(bad.request.facts, at=never)))
    before = hub.outbox_count()
    service._writer._write_isolating([first, bad, second])
    assert isinstance(outcomes["first"], Accepted) and isinstance(outcomes["second"], Accepted)
    failed = outcomes["bad"]
    assert isinstance(failed, HubError) and failed.code == "server.internal"
    assert "nothing of it was kept" in failed.message
    assert hub.outbox_count() == before + 2
    assert hub.store.timeline(broken) == [] and len(hub.store.timeline(good)) == 1


# -- a signed request counts once, whatever its Idempotency-Key --------------------------------

# The order of P-256: an ECDSA signature (r, s) verifies as (r, n - s) too.
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def respelled(token: str) -> str:
    """The same ES256 signature with s turned into n - s: another text, as valid."""
    protected, _, signature = token.split(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    r, s = raw[:32], int.from_bytes(raw[32:], "big")
    return f"{protected}..{b64url(r + (P256_N - s).to_bytes(32, 'big'))}"


def idempotency_rows(hub: Hub, message_id: str) -> list[str]:
    with hub.store.engine.connect() as conn:
        return sorted(str(k) for k in conn.execute(
            select(intake_tables.idempotency.c.key).where(
                intake_tables.idempotency.c.message_id == message_id)).scalars())


def log_rows(hub: Hub, code: str) -> int:
    hub.store.link_log()
    return len(hub.store.log_rows(subject=code))


@pytest.mark.parametrize("first_key", [None, "client-key-1"])
def test_a_replay_under_a_new_idempotency_key_is_the_same_message(hub: Hub,
                                                                   first_key: str | None
                                                                   ) -> None:
    """A captured request sent again within the age window under new Idempotency-Keys (the
    header is not signed): answered as the first time, one message, one outbox row."""
    code = new_code()
    if first_key is not None:  # this test's own: a PostgreSQL database is the session's
        first_key = f"{first_key}-{code}"
    body = json.dumps(dossier(code)).encode()
    token = sign(hub.client_signer, body, SUBMITTED)
    before = hub.outbox_count()
    first = hub.submit({}, raw=body, token=token,
                       headers={"Idempotency-Key": first_key} if first_key else {})
    assert first.status_code == 202 and first.json()["duplicate"] is False, first.text
    message_id = first.json()["message_id"]
    for replay_key in ("attacker-1", "attacker-2", first_key or "attacker-3"):
        again = hub.submit({}, raw=body, token=token, headers={"Idempotency-Key": replay_key})
        assert again.status_code == 202, again.text
        assert again.json() == {"message_id": message_id, "duplicate": True}
    again = hub.submit({}, raw=body, token=token)  # and without the header
    assert again.json() == {"message_id": message_id, "duplicate": True}
    assert hub.outbox_count() == before + 1
    assert len(hub.store.timeline(code)) == 1 and log_rows(hub, code) == 1
    # What the store keeps: the signed content's key beside the client's (or the lt-id's).
    rows = idempotency_rows(hub, message_id)
    assert len(rows) == 2 and sum(r.startswith(SIGNED_KEY_PREFIX) for r in rows) == 1
    assert (first_key or "request:") in " ".join(rows)


def test_a_respelled_ecdsa_signature_is_the_same_request(hub: Hub) -> None:
    code = new_code()
    body = json.dumps(dossier(code)).encode()
    token = sign(hub.client_signer, body, SUBMITTED)
    other = respelled(token)
    assert other != token
    first = hub.submit({}, raw=body, token=token,
                       headers={"Idempotency-Key": f"k-ecdsa-{code}"})
    assert first.status_code == 202, first.text
    again = hub.submit({}, raw=body, token=other,
                       headers={"Idempotency-Key": f"k-other-{code}"})
    # Verified (the respelled signature holds), and recognised.
    assert again.status_code == 202, again.text
    assert again.json() == {"message_id": first.json()["message_id"], "duplicate": True}
    assert len(hub.store.timeline(code)) == 1


def test_a_resubmission_signed_anew_is_caught_under_another_key_too(hub: Hub) -> None:
    """A client retrying with its key and a new signature: the new signed request is recorded
    as the same message, so a copy of it under another key is not new either."""
    code = new_code()
    body = json.dumps(dossier(code)).encode()
    first = hub.submit({}, raw=body, headers={"Idempotency-Key": f"k-{code}"})
    retry_token = sign(hub.client_signer, body, SUBMITTED)
    retry = hub.submit({}, raw=body, token=retry_token, headers={"Idempotency-Key": f"k-{code}"})
    copy = hub.submit({}, raw=body, token=retry_token, headers={"Idempotency-Key": "stolen"})
    expected = {"message_id": first.json()["message_id"], "duplicate": True}
    assert retry.json() == expected and copy.json() == expected
    assert len(hub.store.timeline(code)) == 1


def test_a_signed_body_is_bound_to_its_dossier_s_path(hub: Hub) -> None:
    """A status change names its dossier in the path, which the signature does not cover: a
    body that names no dossier is refused on every path (signed as it is, it could be sent to
    any), and a signed body naming one dossier sent to another's path is refused, before and
    after it was taken on its own path."""
    mine, other = new_code(), new_code()
    unbound = json.dumps({"status": 2, "at": "2025-01-01T09:00:00"}).encode()
    token = sign(hub.client_signer, unbound, STATUS)
    for code in (mine, other):
        refused = hub.post(f"/v1/dossiers/{code}/status", None, STATUS, raw=unbound,
                           token=token)
        assert refused.status_code == 422, refused.text
        problem = refused.json()
        assert (problem["code"], problem["field"]) == ("client.schema_invalid", "dossier_code")
        assert "required" in problem["message"] and code in problem["message"]
    body = json.dumps({"dossier_code": mine, "status": 2,
                       "at": "2025-01-01T09:00:00"}).encode()
    token = sign(hub.client_signer, body, STATUS)
    for taken_before in (False, True):
        if taken_before:
            first = hub.post(f"/v1/dossiers/{mine}/status", None, STATUS, raw=body, token=token)
            assert first.status_code == 202, first.text
        moved = hub.post(f"/v1/dossiers/{other}/status", None, STATUS, raw=body, token=token,
                         headers={"Idempotency-Key": f"elsewhere-{taken_before}"})
        assert moved.status_code == 422, moved.text
        assert (moved.json()["code"], moved.json()["field"]) == ("client.schema_invalid",
                                                                 "dossier_code")
        assert mine in moved.json()["message"] and other in moved.json()["message"]
    assert hub.store.timeline(other) == [] and len(hub.store.timeline(mine)) == 1


def test_a_replay_is_recognised_by_another_process_and_after_a_restart(
        make_hub: Callable[..., Hub], store_url: str) -> None:
    """The replay key is a row of the store, not a process's memory: a hub started afresh on
    the same store (another worker process, or the same after a restart, its in-memory replay
    cache empty) answers the replay as the first hub did."""
    first_hub = make_hub(store_url)
    code = new_code()
    body = json.dumps(dossier(code)).encode()
    token = sign(first_hub.client_signer, body, SUBMITTED)
    # Keys of this dossier: a PostgreSQL database is shared by the session's tests, and a key
    # another test used for another body would be refused there as a reused key.
    first = first_hub.submit({}, raw=body, token=token,
                             headers={"Idempotency-Key": f"k1-{code}"})
    assert first.status_code == 202, first.text
    first_hub.stop()
    second_hub = make_hub(store_url, settings=first_hub.settings)
    again = second_hub.submit({}, raw=body, token=respelled(token),
                              headers={"Idempotency-Key": f"k2-{code}"})
    assert again.status_code == 202, again.text
    assert again.json() == {"message_id": first.json()["message_id"], "duplicate": True}
    assert second_hub.outbox_count() == 1 and len(second_hub.store.timeline(code)) == 1


def test_concurrent_replays_under_different_keys_give_one_message(hub: Hub) -> None:
    """Six copies of one signed request at once, each with a key of its own, through the
    writer's batches: every copy is answered with the one message. The keys are this
    dossier's: on PostgreSQL the session's tests share a database, and a copy under a key
    another test kept for another body is rightly refused as a reused key (409) when it
    comes first, as "k1" of the restart test above once was."""
    service = intake(hub)
    code = new_code()
    who = client(hub)
    body = json.dumps(dossier(code)).encode()
    signed = service.verify_request(who, SUBMITTED, body, sign(hub.client_signer, body,
                                                               SUBMITTED),
                                    header_name="X-Signature")
    results: list[Accepted | HubError] = []

    def send(n: int) -> None:
        try:
            results.append(service.accept(who, SUBMITTED, dossier(code),
                                          idempotency_key=f"k{n}-{code}", upstream_proof=None,
                                          replay_key=signed.replay_key))
        except HubError as exc:  # kept for the assertion, which then names it
            results.append(exc)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answers = [r for r in results if isinstance(r, Accepted)]
    assert len(answers) == 6, results
    assert len({r.message_id for r in answers}) == 1
    assert sorted(r.duplicate for r in answers) == [False] + [True] * 5
    assert len(hub.store.timeline(code)) == 1


@pytest.mark.parametrize("copy", ["signed", "same-key"])
def test_copies_in_two_processes_at_once_give_one_message(
        make_hub: Callable[..., Hub], store_url: str, monkeypatch: pytest.MonkeyPatch,
        copy: str) -> None:
    """Two server processes (two hubs on one store), each given a copy of one request, the
    second's batch reaching the store while the first's transaction, which wrote the copy's
    rows, is still open. ``signed``: one signed REST request under a key of its own each (the
    signed content's key is the same); ``same-key``: the same key and no signed content's key
    (a SOAP request's idempotencyKey or xmldsig digest, a REST resubmission). On PostgreSQL
    the second waits on the dossier's row, reads what is known from before the first's
    commit, fails on the shared key and tries again (asserted: it did); on SQLite it waits for
    the write lock. Either way: one message, the second copy answered as the first, and
    nothing of it kept."""
    first_hub, second_hub = make_hub(store_url), make_hub(store_url)
    first, second = intake(first_hub), intake(second_hub)
    code = new_code()
    who = client(first_hub)
    body = json.dumps(dossier(code)).encode()
    signed = first.verify_request(who, SUBMITTED, body,
                                  sign(first_hub.client_signer, body, SUBMITTED),
                                  header_name="X-Signature")
    held, release, second_writing = threading.Event(), threading.Event(), threading.Event()
    keep_first, keep_second = first._writer._keep, second._writer._keep
    rows_second = second._writer._rows
    second_attempts: list[str] = []

    def holding(tx: Any, jobs: Any, rows: Any) -> Any:
        kept = keep_first(tx, jobs, rows)  # written, not committed
        held.set()
        assert release.wait(60), "the test never let the first transaction commit"
        return kept

    def reaching(jobs: Any) -> Any:
        second_writing.set()  # next: the write lock (SQLite), the transaction
        return rows_second(jobs)

    def counted(tx: Any, jobs: Any, rows: Any) -> Any:
        try:
            kept = keep_second(tx, jobs, rows)
        except Exception as exc:
            second_attempts.append(type(exc).__name__)
            raise
        second_attempts.append("kept")
        return kept

    monkeypatch.setattr(first._writer, "_keep", holding)
    monkeypatch.setattr(second._writer, "_rows", reaching)
    monkeypatch.setattr(second._writer, "_keep", counted)

    replay_key = signed.replay_key if copy == "signed" else None

    def send(service: IntakeService, key: str) -> Accepted:
        return service.accept(who, SUBMITTED, dossier(code), idempotency_key=key,
                              upstream_proof=None, replay_key=replay_key)

    key_a, key_b = f"a-{code}", f"b-{code}" if copy == "signed" else f"a-{code}"
    with ThreadPoolExecutor(2) as pool:
        try:
            copy_a = pool.submit(send, first, key_a)
            wait_for(held.is_set, 30, "the first hub's transaction to have written the copy")
            copy_b = pool.submit(send, second, key_b)
            wait_for(second_writing.is_set, 30, "the second hub's batch to reach the store")
            if first_hub.store.dialect == "postgresql":
                wait_for(lambda: lock_waits(first_hub) > 0, 30,
                         "the second hub's transaction to wait on the first's rows")
        finally:
            release.set()
        answer_a, answer_b = copy_a.result(60), copy_b.result(60)

    assert answer_a == Accepted(answer_a.message_id, duplicate=False)
    assert answer_b == Accepted(answer_a.message_id, duplicate=True)
    if first_hub.store.dialect == "postgresql":
        assert second_attempts == ["IntegrityError", "kept"]
    else:
        assert second_attempts == ["kept"]
    # Nothing half-written: the first copy's rows, none of the second's.
    assert (first_hub.outbox_count(), second_hub.outbox_count()) == (1, 0)
    assert len(first_hub.store.timeline(code)) == 1 and log_rows(first_hub, code) == 1
    assert idempotency_rows(first_hub, answer_a.message_id) == sorted(
        [key_a] + ([replay_key] if replay_key else []))
    with first_hub.store.engine.connect() as conn:
        if key_b != key_a:
            assert conn.execute(select(func.count()).select_from(
                intake_tables.idempotency).where(
                intake_tables.idempotency.c.key == key_b)).scalar_one() == 0
        assert conn.execute(select(intake_tables.dossiers.c.sequence).where(
            intake_tables.dossiers.c.dossier_code == code)).scalar_one() == 1


def lock_waits(hub: Hub) -> int:
    """Sessions of this test's PostgreSQL database waiting for a lock another holds."""
    with hub.store.engine.connect() as conn:
        return int(conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'").scalar_one())


def test_the_replay_key_is_the_signed_content() -> None:
    """Of the protected header as sent and the body: not the signature's text."""
    protected = b64url(b'{"alg":"ES256","lt-id":"1"}')
    key = signed_request_key(f"{protected}..{b64url(b'x' * 64)}", b"body")
    assert key == signed_request_key(f"{protected}..{b64url(b'y' * 64)}", b"body")
    assert key.startswith(SIGNED_KEY_PREFIX) and len(key) <= 255
    assert key != signed_request_key(f"{protected}..{b64url(b'x' * 64)}", b"body ")
    other = b64url(b'{"alg":"ES256","lt-id":"2"}')
    assert key != signed_request_key(f"{other}..{b64url(b'x' * 64)}", b"body")
