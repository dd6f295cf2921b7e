"""The job scripts (ACCEPT, START, FINISH, CLAIM_DUE) against a real Redis: credits, states, batches, outbox."""

from __future__ import annotations

import json
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import names
from shared.credits import Credits
from shared.errors import IdempotencyMismatch, InsufficientCredits, NoCapacity, QueueFull, TooManyJobs, Unauthorized
from shared.jobs import Cancel, Idempotency, JobStore, Limits, Start, Verdict, id_age_s, new_id
from shared.keys import KeyStore, hash_key
from shared.records import JobRecord, JobStatus
from tests.helpers import success

QUEUES = {"high": names.QUEUE_HIGH, "normal": names.QUEUE_NORMAL, "low": names.QUEUE_LOW}


@pytest.fixture
def store(rclient):
    return JobStore(rclient, retention_s=100)


def make_key(rclient, credits: int) -> str:
    return hash_key(KeyStore(rclient).create(credits))


def new_jobs(key_id: str, n: int = 1, cost: int = 1, priority: str = "normal", **extra) -> list[JobRecord]:
    return [JobRecord(id=new_id(), key_id=key_id, params={"prompt": "x"}, cost=cost,
                   queue=QUEUES[priority], priority=priority, **extra) for _ in range(n)]


def waiting(rclient) -> set[str]:
    return {m.decode() for q in names.INFER_QUEUES for m in rclient.zrange(names.waiting(q), 0, -1)}


def test_accept_reserves_and_records_everything_in_one_step(store, rclient):
    key_id = make_key(rclient, 5)
    [job] = new_jobs(key_id, cost=2)
    assert store.accept([job]).balance == 3
    record = store.get(job.id)
    assert record.status == "queued" and record.cost == 2 and record.params.to_json() == '{"prompt":"x"}'
    assert int(rclient.get(names.hold(job.id))) == 2 and rclient.ttl(names.hold(job.id)) == -1  # never expires
    assert waiting(rclient) == {job.id}  # the waiting entry exists before the broker has the job
    assert rclient.zscore(names.UNSENT, job.id) is not None
    store.sent([job.id])
    assert rclient.zscore(names.UNSENT, job.id) is None


def test_accept_refuses_and_changes_nothing(store, rclient):
    key_id = make_key(rclient, 1)
    with pytest.raises(InsufficientCredits, match="costs 2 credits; the key has 1"):
        store.accept(new_jobs(key_id, n=2))
    with pytest.raises(Unauthorized, match="unknown"):
        store.accept(new_jobs("nope"))
    KeyStore(rclient).disable(key_id)
    with pytest.raises(Unauthorized, match="disabled"):
        store.accept(new_jobs(key_id))
    assert Credits(rclient).balance(key_id) == 1
    assert not rclient.keys("samq:job:*") and not rclient.keys("samq:hold:*") and not waiting(rclient)


def test_credits_and_key_are_checked_before_capacity(store, rclient):
    """A key with no credits gets 406 even when no worker runs; 503 only for a request that could run."""
    no_worker = Limits(workers_since=time.time())
    with pytest.raises(InsufficientCredits):
        store.accept(new_jobs(make_key(rclient, 0)), limits=no_worker)
    with pytest.raises(Unauthorized):
        store.accept(new_jobs("nope"), limits=no_worker)
    key_id = make_key(rclient, 5)
    with pytest.raises(NoCapacity) as err:
        store.accept(new_jobs(key_id), limits=no_worker)
    assert err.value.retry_after_s == 5
    rclient.zadd(names.WORKERS, {"w@h": time.time()})
    assert store.accept(new_jobs(key_id), limits=Limits(workers_since=time.time() - 1)).balance == 4


def test_queue_bounds_refuse_without_charging(store, rclient):
    key_id = make_key(rclient, 10)
    store.accept(new_jobs(key_id, n=3))
    with pytest.raises(QueueFull):
        store.accept(new_jobs(key_id), limits=Limits(max_queued=3))
    with pytest.raises(TooManyJobs):
        store.accept(new_jobs(key_id), limits=Limits(max_active_per_key=3))
    assert Credits(rclient).balance(key_id) == 7


def test_success_commits_once_and_is_final(store, rclient):
    key_id = make_key(rclient, 5)
    [job] = new_jobs(key_id, cost=2)
    store.accept([job])
    record = store.get(job.id)
    assert store.start(record, max_attempts=3) == Start(Verdict.RUN, 1)
    assert store.finish(record, JobStatus.SUCCEEDED, success=success(objects_found=1))
    assert not store.fail(record, "x", "late failure", 500)  # terminal states never change
    record = store.get(job.id)
    assert record.status == "succeeded" and record.error_code is None
    assert Credits(rclient).balance(key_id) == 3 and not rclient.exists(names.hold(job.id))
    assert 0 < rclient.ttl(names.job(job.id)) <= 100  # retention counts from the end
    assert rclient.zscore(names.EXPIRING, job.id) is not None


def test_failure_refunds_exactly_once(store, rclient):
    key_id = make_key(rclient, 5)
    [job] = new_jobs(key_id, cost=2)
    store.accept([job])
    record = store.get(job.id)
    store.start(record, max_attempts=3)
    assert store.fail(record, "undecodable_image", "bad", 422)
    assert not store.fail(record, "undecodable_image", "bad", 422)
    assert not store.finish(record, JobStatus.SUCCEEDED)
    assert Credits(rclient).balance(key_id) == 5
    assert store.get(job.id).error_status == 422


def test_start_counts_attempts_and_stops_at_the_bound(rclient):
    store = JobStore(rclient, retention_s=100, lease_s=0)  # each worker dies at once: its lease lapses
    [job] = new_jobs(make_key(rclient, 5))
    store.accept([job])
    record = store.get(job.id)
    assert [store.start(record, max_attempts=2) for _ in range(3)] == [
        Start(Verdict.RUN, 1), Start(Verdict.RUN, 2), Start(Verdict.EXHAUSTED, 3)]
    store.fail(record, "too_many_attempts", "x", 500)
    assert store.start(record, max_attempts=2).verdict is Verdict.SKIP


def test_a_job_started_before_its_gateway_publishes_leaves_no_waiting_entry(store, rclient):
    """The race of the old order (publish, then add to the waiting set): a worker may start and finish
    the job before the gateway's next step. Now the waiting entry is written in ACCEPT, so START removes
    it whatever the timing, and the gateway's last step only clears the rescue mark."""
    [job] = new_jobs(make_key(rclient, 5))
    store.accept([job])
    record = store.get(job.id)
    store.start(record, 3)  # the worker is faster than the gateway
    store.finish(record, JobStatus.SUCCEEDED)
    store.sent([job.id])  # the gateway's step after the publish
    assert waiting(rclient) == set() and rclient.zcard(names.UNSENT) == 0


def test_waiting_jobs_are_peeked_in_priority_order_and_leave_when_started(store, rclient):
    key_id = make_key(rclient, 10)
    ids = {}
    for name, priority in (("n1", "normal"), ("l1", "low"), ("h1", "high"), ("n2", "normal")):
        [job] = new_jobs(key_id, priority=priority)
        store.accept([job])
        ids[job.id] = name
    assert [ids[i] for i in store.peek_waiting(names.INFER_QUEUES, 10)] == ["h1", "n1", "n2", "l1"]
    n1 = next(i for i, n in ids.items() if n == "n1")
    store.start(store.get(n1), 3)
    assert [ids[i] for i in store.peek_waiting(names.INFER_QUEUES, 10)] == ["h1", "n2", "l1"]


def test_a_batch_of_mixed_priorities_waits_in_each_jobs_own_queue(store, rclient):
    key_id = make_key(rclient, 5)
    batch_id = new_id()
    jobs = [*new_jobs(key_id, priority="low", batch_id=batch_id), *new_jobs(key_id, priority="high", batch_id=batch_id)]
    store.accept(jobs, batch={"id": batch_id, "key_id": key_id})
    for job in jobs:
        assert rclient.zscore(names.waiting(job.queue), job.id) is not None
        store.start(store.get(job.id), 3)
    assert waiting(rclient) == set()


def test_unsent_jobs_are_claimed_once_and_only_when_old(store, rclient):
    [job] = new_jobs(make_key(rclient, 5))
    store.accept([job])
    assert store.claim_unsent(older_than_s=60) == []  # too recent: its gateway may still be sending it
    time.sleep(0.05)
    assert store.claim_unsent(older_than_s=0.01) == [job.id]
    assert store.claim_unsent(older_than_s=0) == []


def test_finish_publishes_on_the_done_channel(store, rclient):
    [job] = new_jobs(make_key(rclient, 5))
    store.accept([job])
    pubsub = rclient.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(names.job_done(job.id))
    pubsub.get_message(timeout=1)
    store.finish(store.get(job.id), JobStatus.SUCCEEDED)
    message = pubsub.get_message(timeout=2)
    assert message is not None and message["data"] == b"succeeded"
    pubsub.close()


def _idem(key: str, body: str) -> Idempotency:
    return Idempotency(key, fingerprint=body, status=202, body=json.dumps({"answer": body}))


def test_idempotent_accept_replays_the_first_answer(store, rclient):
    key_id = make_key(rclient, 5)
    first = store.accept(new_jobs(key_id), _idem("k1", "A"))
    assert first.balance == 4 and first.replay is None
    again = store.accept(new_jobs(key_id), _idem("k1", "A"))
    assert again.replay == (202, json.dumps({"answer": "A"}))
    with pytest.raises(IdempotencyMismatch):
        store.accept(new_jobs(key_id), _idem("k1", "B"))
    assert Credits(rclient).balance(key_id) == 4 and len(rclient.keys("samq:job:*")) == 1
    assert 0 < rclient.ttl(names.idempotency(key_id, "k1")) <= 24 * 3600
    other = make_key(rclient, 5)  # idempotency keys are scoped to the API key
    assert store.accept(new_jobs(other), _idem("k1", "A")).replay is None


def test_concurrent_duplicates_resolve_to_one_job(store, rclient):
    key_id = make_key(rclient, 50)
    results = []
    barrier = threading.Barrier(8)

    def submit():
        barrier.wait()
        results.append(store.accept(new_jobs(key_id), _idem("same", "body")))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.replay is None for r in results) == 1 and len(results) == 8
    assert Credits(rclient).balance(key_id) == 49 and len(rclient.keys("samq:job:*")) == 1


def _batch_jobs(store, rclient, n, webhook_url=None):
    key_id = make_key(rclient, 10)
    batch_id = new_id()
    jobs = new_jobs(key_id, n=n, batch_id=batch_id)
    store.accept(jobs, batch={"id": batch_id, "key_id": key_id, "webhook_url": webhook_url})
    return key_id, batch_id, [store.get(j.id) for j in jobs]


def test_batch_counters_follow_every_job(store, rclient):
    from shared.batches import batch_job_ids, get_batch

    key_id, batch_id, jobs = _batch_jobs(store, rclient, 3)
    assert Credits(rclient).balance(key_id) == 7
    assert batch_job_ids(rclient, batch_id) == [j.id for j in jobs]
    store.start(jobs[0], 3)
    store.finish(jobs[0], JobStatus.SUCCEEDED)
    store.start(jobs[1], 3)
    assert store.cancel(jobs[2]) is Cancel.CANCELED
    batch = get_batch(rclient, batch_id)
    assert (batch["queued"], batch["running"], batch["succeeded"], batch["canceled"]) == (0, 1, 1, 1)
    assert "finished_at" not in batch
    store.fail(jobs[1], "x", "y", 500)
    batch = get_batch(rclient, batch_id)
    assert batch["failed"] == 1 and batch["running"] == 0 and "finished_at" in batch
    assert 0 < rclient.ttl(names.batch(batch_id)) <= 100


def test_batch_completed_is_written_once_when_the_last_two_jobs_end_together(store, rclient):
    _, batch_id, jobs = _batch_jobs(store, rclient, 2, webhook_url="https://example.com/hook")
    for job in jobs:
        store.start(job, 3)
    barrier = threading.Barrier(2)

    def finish(job):
        other = JobStore(rclient.__class__(connection_pool=rclient.connection_pool), retention_s=100)
        barrier.wait()
        other.finish(job, JobStatus.SUCCEEDED)

    threads = [threading.Thread(target=finish, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = [json.loads(e) for e in rclient.zrange(names.OUTBOX, 0, -1)]
    assert [e["type"] for e in events] == ["batch.completed"]
    assert events[0]["batch_id"] == batch_id and events[0]["id"].startswith("msg_")


def test_job_events_are_written_with_the_state_change(store, rclient):
    published = []
    store.on_events = published.extend
    key_id = make_key(rclient, 5)
    [job] = new_jobs(key_id, webhook_url="https://example.com/h", webhook_events=["started", "completed"])
    [quiet] = new_jobs(key_id)
    store.accept([job, quiet])
    for j in (job, quiet):
        record = store.get(j.id)
        store.start(record, 3)
        store.finish(record, JobStatus.SUCCEEDED)
    types = [json.loads(e)["type"] for e in published]
    assert types == ["job.started", "job.succeeded"]
    assert {json.loads(e)["job_id"] for e in published} == {job.id}
    assert rclient.zcard(names.OUTBOX) == 2  # they stay until the publisher removes them


def test_cancel_at_each_state(store, rclient):
    key_id = make_key(rclient, 5)
    queued, running, done = new_jobs(key_id, n=3)
    store.accept([queued, running, done])
    assert store.cancel(store.get(queued.id)) is Cancel.CANCELED
    assert store.get(queued.id).status == "canceled" and queued.id not in waiting(rclient)
    assert Credits(rclient).balance(key_id) == 3
    record = store.get(running.id)
    store.start(record, 3)
    assert store.cancel(record) is Cancel.REQUESTED and store.cancel_requested(running.id)
    # The worker finishes after the cancel: it ends canceled, refunded, and its fields are not stored.
    assert not store.finish(record, JobStatus.SUCCEEDED, success=success(outputs={"x": {}}))
    assert store.get(running.id).status == "canceled" and "outputs" not in store.get(running.id)
    assert Credits(rclient).balance(key_id) == 4
    record = store.get(done.id)
    store.start(record, 3)
    store.finish(record, JobStatus.SUCCEEDED)
    assert store.cancel(record) is Cancel.TERMINAL
    assert Credits(rclient).balance(key_id) == 4
    # A cancel asked of a running job whose worker died: the redelivery's START says to cancel it.
    [orphan] = new_jobs(key_id)
    store.accept([orphan])
    record = store.get(orphan.id)
    store.start(record, 3)
    store.cancel(record)
    assert store.start(record, 3).verdict is Verdict.SKIP  # its worker may be alive: it holds the lease
    rclient.zadd(names.LEASES, {orphan.id: 0})  # the worker died: its lease lapsed
    assert store.start(record, 3).verdict is Verdict.CANCEL


def test_jobs_of_a_disabled_key_are_not_started(store, rclient):
    raw = KeyStore(rclient).create(5)
    jobs = new_jobs(hash_key(raw), n=3)
    store.accept(jobs)
    assert store.start(store.get(jobs[0].id), 3).verdict is Verdict.RUN
    KeyStore(rclient).disable(hash_key(raw))
    assert store.start(store.get(jobs[1].id), 3).verdict is Verdict.CANCEL  # the worker cancels and refunds it


def test_ids_are_unguessable_and_tell_their_age():
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 43 for i in ids)
    assert 0 <= id_age_s(new_id()) < 1
    assert id_age_s("not-an-id") is None


OPS = st.lists(st.tuples(st.sampled_from(["accept", "start", "succeed", "fail", "cancel"]), st.integers(0, 5)),
               max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_credits_are_conserved_over_any_sequence(rclient, ops):
    """Reserved = committed + refunded + held; one terminal state per job; no waiting entry once all ended."""
    rclient.flushdb()
    store = JobStore(rclient, retention_s=100)
    key_id = make_key(rclient, 20)
    ids: list[str] = []
    for op, index in ops:
        if op == "accept":
            try:
                [job] = new_jobs(key_id, cost=2)
                store.accept([job])
                ids.append(job.id)
            except InsufficientCredits:
                pass
            continue
        if not ids:
            continue
        record = store.get(ids[index % len(ids)])
        if op == "start":
            store.start(record, 3)
        elif op == "succeed":
            store.finish(record, JobStatus.SUCCEEDED)
        elif op == "fail":
            store.fail(record, "x", "y", 500)
        else:
            store.cancel(record)
    stats = {k.decode(): int(v) for k, v in rclient.hgetall(names.STATS).items()}
    held = sum(int(rclient.get(names.hold(i)) or 0) for i in ids)
    reserved = stats.get("credits_reserved", 0)
    assert reserved == stats.get("credits_committed", 0) + stats.get("credits_refunded", 0) + held
    assert Credits(rclient).balance(key_id) == 20 - stats.get("credits_committed", 0) - held
    records = [store.get(i) for i in ids]
    ended = sum(stats.get(f"jobs_{s}", 0) for s in ("succeeded", "failed", "canceled"))
    assert ended == sum(r.status.terminal for r in records)  # each job ended at most once
    for r in records:  # a hold exists exactly while the job has not ended
        assert rclient.exists(names.hold(r.id)) == (not r.status.terminal)
    for r in records:  # end everything: nothing may stay waiting
        if not r.status.terminal:
            store.cancel(r)
            store.finish(store.get(r.id), JobStatus.FAILED)
    assert waiting(rclient) == set()
