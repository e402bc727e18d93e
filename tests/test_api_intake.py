"""The intake service on both stores: accepted means kept (outbox, log, timeline in one
transaction), idempotent resubmission, sequences and status transitions."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
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
)

from hub.api import intake_tables
from hub.api.errors import IdempotencyConflict
from hub.api.intake import UPSTREAM_PROOF, Accepted, IntakeService
from hub.envelope import Envelope
from hub.errors import AccessDenied, HubError, ValidationError
from hub.signing.truststore import TrustStore
from hub.signing.verifier import Verifier


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
        results.append(service.accept(who, SUBMITTED, dossier(code), idempotency_key="same",
                                      upstream_proof=None))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.message_id for r in results}) == 1
    assert sorted(r.duplicate for r in results) == [False] + [True] * 5
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
    accepted = service.accept(who, SUBMITTED, dossier(new_code()), idempotency_key="svc-1",
                              upstream_proof="<digest>")
    with pytest.raises(IdempotencyConflict):
        service.accept(who, SUBMITTED, dossier(new_code()), idempotency_key="svc-1",
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
        threading.Thread(target=send, args=(SUBMITTED, dossier(other), "batch-key")),
        threading.Thread(target=send, args=(SUBMITTED, dossier(other), "batch-key")),
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
        return service._prepare(who, SUBMITTED, dossier(code), None, None,
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
