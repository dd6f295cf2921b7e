"""The Lua scripts that move credits and job states, against a real Redis."""

import pytest

from shared import names
from shared.credits import Credits
from shared.errors import InsufficientCredits, Unauthorized
from shared.jobs import JobStatus, JobStore
from shared.keys import KeyStore, hash_key


@pytest.fixture
def keys(rclient):
    return KeyStore(rclient)


def test_keys_are_stored_hashed_never_raw(keys, rclient):
    raw = keys.create(10, "alice")
    assert raw.startswith("sk_")
    stored = b" ".join(k + b" " + b" ".join(rclient.hgetall(k).values()) for k in rclient.keys("samq:key:*"))
    assert raw.encode() not in stored and hash_key(raw).encode() in stored
    assert keys.lookup(raw).credits == 10 and keys.lookup(raw).name == "alice"
    assert keys.lookup(raw + "x") is None


def test_reserve_takes_the_cost_and_records_a_hold(keys, rclient):
    key_id = hash_key(keys.create(3))
    res = Credits(rclient).reserve(key_id, "job1", 2, 60)
    assert res.balance == 1
    assert int(rclient.get(names.hold("job1"))) == 2
    assert 0 < rclient.ttl(names.hold("job1")) <= 60


def test_reserve_refuses_and_changes_nothing(keys, rclient):
    credits = Credits(rclient)
    key_id = hash_key(keys.create(1))
    with pytest.raises(InsufficientCredits):
        credits.reserve(key_id, "job1", 2, 60)
    assert credits.balance(key_id) == 1 and not rclient.exists(names.hold("job1"))
    with pytest.raises(Unauthorized, match="unknown"):
        credits.reserve("nope", "job2", 1, 60)
    keys.disable(key_id)
    with pytest.raises(Unauthorized, match="disabled"):
        credits.reserve(key_id, "job3", 1, 60)
    assert credits.balance(key_id) == 1


def test_refund_happens_at_most_once(keys, rclient):
    credits = Credits(rclient)
    key_id = hash_key(keys.create(5))
    credits.reserve(key_id, "job1", 2, 60)
    assert credits.refund(key_id, "job1") == 2
    assert credits.refund(key_id, "job1") == 0
    assert credits.balance(key_id) == 5


def test_add_credits_needs_an_existing_key(keys, rclient):
    credits = Credits(rclient)
    key_id = hash_key(keys.create(5))
    assert credits.add(key_id, 7) == 12
    assert credits.add("missing", 7) is None
    assert not rclient.exists(names.credits("missing"))


def _job(rclient, keys, credits=5, cost=2):
    key_id = hash_key(keys.create(credits))
    Credits(rclient).reserve(key_id, "job1", cost, 60)
    store = JobStore(rclient, ttl_s=100)
    store.create("job1", key_id=key_id, cost=cost, params={"prompt": "x"})
    return store, store.get("job1"), key_id


def test_success_commits_once_and_is_final(keys, rclient):
    store, job, key_id = _job(rclient, keys)
    assert store.start("job1", max_attempts=3) == 1
    assert store.finish(job, JobStatus.SUCCEEDED, objects_found=1)
    assert not store.fail(job, "x", "late failure", 500)  # terminal states never change
    record = store.get("job1")
    assert record["status"] == "succeeded" and "error_code" not in record
    assert Credits(rclient).balance(key_id) == 3 and not rclient.exists(names.hold("job1"))
    assert 0 < rclient.ttl(names.job("job1")) <= 100


def test_failure_refunds_exactly_once(keys, rclient):
    store, job, key_id = _job(rclient, keys)
    store.start("job1", max_attempts=3)
    assert store.fail(job, "undecodable_image", "bad", 422)
    assert not store.fail(job, "undecodable_image", "bad", 422)
    assert not store.finish(job, JobStatus.SUCCEEDED)
    assert Credits(rclient).balance(key_id) == 5
    assert store.get("job1")["error_status"] == 422


def test_start_counts_attempts_and_stops_at_the_bound(keys, rclient):
    store, job, _ = _job(rclient, keys)
    assert [store.start("job1", max_attempts=2) for _ in range(3)] == [1, 2, -3]
    assert store.get("job1")["status"] == "running"
    store.fail(job, "too_many_attempts", "x", 500)
    assert store.start("job1", max_attempts=2) == 0
    assert store.start("unknown", max_attempts=2) == 0


def test_finish_publishes_on_the_done_channel(keys, rclient):
    store, job, _ = _job(rclient, keys)
    pubsub = rclient.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(names.job_done("job1"))
    pubsub.get_message(timeout=1)
    store.finish(job, JobStatus.SUCCEEDED)
    message = pubsub.get_message(timeout=2)
    assert message is not None and message["data"] == b"succeeded"
    pubsub.close()


def test_unsent_jobs_are_claimed_once_and_only_when_old(keys, rclient):
    import time

    store, _, _ = _job(rclient, keys)
    assert store.claim_unsent(older_than_s=60) == []  # too recent: its gateway may still be sending it
    time.sleep(0.05)
    assert store.claim_unsent(older_than_s=0.01) == ["job1"]
    assert store.claim_unsent(older_than_s=0) == []
    store.create("job2", key_id="k")
    store.mark_sent("job2", names.QUEUE_NORMAL)
    assert store.peek_waiting(names.INFER_QUEUES, 5) == ["job2"]
    assert store.claim_unsent(older_than_s=0) == []


def test_waiting_jobs_are_peeked_in_priority_order_and_leave_when_started(keys, rclient):
    store = JobStore(rclient, ttl_s=100)
    for job_id, queue in (("n1", names.QUEUE_NORMAL), ("l1", names.QUEUE_LOW), ("h1", names.QUEUE_HIGH),
                          ("n2", names.QUEUE_NORMAL)):
        store.create(job_id, key_id="k", queue=queue)
        store.mark_sent(job_id, queue)
    assert store.peek_waiting(names.INFER_QUEUES, 10) == ["h1", "n1", "n2", "l1"]
    assert store.peek_waiting(names.INFER_QUEUES, 2) == ["h1", "n1"]
    assert store.start("n1", 3, names.QUEUE_NORMAL) == 1
    assert store.peek_waiting(names.INFER_QUEUES, 10) == ["h1", "n2", "l1"]


def test_workers_are_alive_for_three_heartbeats(rclient):
    import time

    from shared import workers

    workers.announce(rclient, "a@host")
    rclient.zadd(names.WORKERS, {"old@host": time.time() - 10})
    assert workers.alive(rclient, heartbeat_s=1.0) == ["a@host"]
    assert sorted(workers.alive(rclient, heartbeat_s=5.0)) == ["a@host", "old@host"]
    workers.retire(rclient, "a@host")
    assert workers.alive(rclient, heartbeat_s=1.0) == []
