"""SAMQ_REDIS_MIN_REPLICAS against the test Redis, which has no replica: every WAIT times out, so every write that
must be confirmed is not, and the gateway must answer 503 with the jobs undone (refunded, never queued)."""

from __future__ import annotations

import base64
import time

import pytest

from harness.ledger import check_ledger
from harness.photos import ROCKET_JPG
from shared import names
from shared.errors import NotReplicated
from shared.jobs import JobStore, new_id
from shared.keys import KeyStore, hash_key
from shared.records import JobRecord, JobStatus
from shared.redis_client import run_replicated
from tests.unit.gateway_app import make_app

IMAGE = base64.b64encode(ROCKET_JPG.read_bytes()).decode()
WAIT_MS = 50
# KEYS[1] a counter; ARGV none. Returns its new value.
BUMP = "return redis.call('INCR', KEYS[1])"


@pytest.fixture
def gw(redis_url, tmp_path, rclient):
    app = make_app(redis_url, tmp_path, redis_min_replicas=1, redis_wait_timeout_ms=WAIT_MS)
    return app.test_client(), rclient


def test_a_write_no_replica_confirms_raises_after_the_timeout_with_its_result(rclient):
    script = rclient.register_script(BUMP)
    started = time.monotonic()
    with pytest.raises(NotReplicated) as caught:
        run_replicated(rclient, script, ["n"], [], 1, WAIT_MS)
    assert time.monotonic() - started >= WAIT_MS / 1000
    assert (caught.value.result, caught.value.acked) == (1, 0)
    assert run_replicated(rclient, script, ["n"], [], 0, WAIT_MS) == 2  # 0 = off: no WAIT


def _nothing_left(rclient, key: str, credits: int) -> None:
    """Balance as before, no credit held, nothing on the broker's queues, no job left to run."""
    assert KeyStore(rclient).credits.balance(hash_key(key)) == credits
    check_ledger(rclient, {key: credits})
    assert not list(rclient.scan_iter(match=names.hold("*")))
    assert [rclient.llen(q) for q in names.INFER_QUEUES] == [0, 0, 0]
    assert rclient.zcard(names.UNSENT) == 0  # and nothing left for the workers' resend
    statuses = {rclient.hget(k, "status") for k in rclient.scan_iter(match=names.job("*"))}
    assert statuses <= {b"failed"}, statuses


def test_a_mixed_batch_whose_lowered_holds_are_not_confirmed_is_undone(gw):
    client, rclient = gw
    key = KeyStore(rclient).create(20, "mix")
    items = [{"image": IMAGE, "everything": True}, {"image": IMAGE, "coordinates": [[10, 10]]}]
    r = client.post("/v1/batches", json={"items": items}, headers={"x-api-key": key, "Idempotency-Key": "b1"})
    assert r.status_code == 503, r.get_json()
    assert r.get_json()["error"]["code"] == "unavailable" and int(r.headers["Retry-After"]) > 0
    _nothing_left(rclient, key, 20)
    assert not list(rclient.scan_iter(match=names.idempotency(hash_key(key), "*")))  # a retry runs anew


def test_a_job_no_replica_confirms_is_answered_503_and_undone(gw):
    client, rclient = gw
    key = KeyStore(rclient).create(5, "one")
    r = client.post("/v1/jobs", json={"image": IMAGE, "coordinates": [[10, 10]]},
                    headers={"x-api-key": key, "Idempotency-Key": "j1"})
    assert r.status_code == 503, r.get_json()
    assert r.get_json()["error"]["code"] == "unavailable" and int(r.headers["Retry-After"]) > 0
    _nothing_left(rclient, key, 5)
    assert not list(rclient.scan_iter(match=names.idempotency(hash_key(key), "*")))
    [job] = [rclient.hgetall(k) for k in rclient.scan_iter(match=names.job("*"))]
    assert job[b"error_code"] == b"unavailable"


def test_a_refusal_is_answered_as_it_is_even_unconfirmed(gw):
    client, rclient = gw
    key = KeyStore(rclient).create(0, "poor")  # ACCEPT refuses, writing nothing: nothing to confirm or undo
    r = client.post("/v1/jobs", json={"image": IMAGE, "coordinates": [[10, 10]]}, headers={"x-api-key": key})
    assert r.status_code == 406 and r.get_json()["error"]["code"] == "insufficient_credits"


def test_an_unconfirmed_finish_settles_on_the_primary_and_leaves_its_events_to_the_sweep(rclient):
    key_id = hash_key(KeyStore(rclient).create(5, "w"))
    job = JobRecord(id=new_id(), key_id=key_id, params={"prompt": "x"}, cost=1, webhook_url="https://example.com/h")
    JobStore(rclient, 60).accept([job])
    published: list[str] = []
    store = JobStore(rclient, 60, published.extend, min_replicas=1, wait_timeout_ms=WAIT_MS)
    start = store.start(store.get(job.id), 3, "w1@host")
    assert store.finish(store.get(job.id), JobStatus.SUCCEEDED, start.run)  # settled: no undo, no exception
    assert store.get(job.id).status is JobStatus.SUCCEEDED
    assert [e for e in published if "succeeded" in e] == []  # not sent now ...
    assert any(b"succeeded" in e for e in rclient.zrange(names.OUTBOX, 0, -1))  # ... the outbox's sweep sends it


def test_an_unconfirmed_cancel_answers_503(gw, redis_url, tmp_path):
    client, rclient = gw
    key = KeyStore(rclient).create(5, "c")
    plain = make_app(redis_url, tmp_path).test_client()  # accepted without waiting for replicas
    job_id = plain.post("/v1/jobs", json={"image": IMAGE, "coordinates": [[10, 10]]},
                        headers={"x-api-key": key}).get_json()["id"]
    r = client.post(f"/v1/jobs/{job_id}/cancel", headers={"x-api-key": key})
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "unavailable"
