"""Leases on running jobs (START, RENEW, CLAIM_LAPSED, FINISH with a run) against a real Redis: a job whose worker
stops renewing goes back to its queue once, stale broker messages are skipped, a run claimed away cannot settle,
attempts stay bounded, and the ledger adds up."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import names
from shared.credits import Credits
from shared.jobs import Finish, JobStore, Verdict
from shared.records import JobStatus
from tests.helpers import success
from tests.unit.test_jobs import make_key, new_jobs, waiting


@pytest.fixture
def store(rclient):
    return JobStore(rclient, retention_s=100)


def lapse(rclient, job_id: str) -> None:
    """The lease ends now, as if its worker had stopped renewing it LEASE_S ago."""
    rclient.zadd(names.LEASES, {job_id: time.time() - 1}, xx=True)


def started(store, rclient, worker="w1@h", cost=1, **extra):
    key_id = make_key(rclient, 10)
    [job] = new_jobs(key_id, cost=cost, **extra)
    store.accept([job])
    record = store.get(job.id)
    return key_id, record, store.start(record, 3, worker)


def test_start_records_the_worker_and_a_lease(rclient):
    store = JobStore(rclient, retention_s=100, lease_s=15)
    before = time.time()
    _, record, start = started(store, rclient)
    assert start.verdict is Verdict.RUN and start.attempt == 1 and start.run == 1
    job = store.get(record.id)
    assert job.worker == "w1@h" and job.run == 1 and job.status == "running"
    assert before + 15 <= rclient.zscore(names.LEASES, record.id) <= time.time() + 15
    assert store.finish(record, JobStatus.SUCCEEDED, run=1)
    done = store.get(record.id)
    assert done.worker == "w1@h"  # kept once it ended
    assert rclient.zscore(names.LEASES, record.id) is None  # FINISH ends the lease


def test_renew_moves_the_lease_on_only_for_the_run_held(store, rclient):
    _, record, start = started(store, rclient)
    lapse(rclient, record.id)  # slow, not dead: nobody claimed it yet
    assert store.renew({record.id: start.run}, lease_s=60) == []
    assert rclient.zscore(names.LEASES, record.id) > time.time() + 55
    assert store.renew({record.id: start.run}, lease_s=5) == []
    assert rclient.zscore(names.LEASES, record.id) > time.time() + 55  # a longer lease (a retry's) stays
    assert store.renew({record.id: start.run + 1}) == [record.id]  # not that run: reported, not renewed
    assert store.renew({}) == []


def test_a_lapsed_lease_is_claimed_once_and_the_job_queued_again(store, rclient):
    _, record, start = started(store, rclient)
    assert store.claim_lapsed() == []  # the lease is live
    lapse(rclient, record.id)
    assert store.claim_lapsed() == [(record.id, names.QUEUE_NORMAL)]
    assert store.claim_lapsed() == []  # once
    job = store.get(record.id)
    assert job.status == "queued" and job.attempts == 1 and job.run == 2 and job.worker == "w1@h"
    assert waiting(rclient) == {record.id}  # counted as queued again, on its own queue
    assert rclient.zscore(names.UNSENT, record.id) is not None  # rescued by a resend if the claimer dies
    assert rclient.zscore(names.LEASES, record.id) is None
    assert store.renew({record.id: start.run}) == [record.id]  # the old run's worker learns it lost it


def test_claims_from_many_workers_at_once_take_each_job_once(store, rclient):
    ids = []
    for _ in range(20):
        _, record, _ = started(store, rclient)
        lapse(rclient, record.id)
        ids.append(record.id)
    taken: list[str] = []
    lock = threading.Lock()

    def claim() -> None:
        mine = [i for i, _ in JobStore(rclient, retention_s=100).claim_lapsed(limit=7)]
        with lock:
            taken.extend(mine)

    for _ in range(3):  # several rounds: each claim takes at most 7
        threads = [threading.Thread(target=claim) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(taken) == sorted(ids)  # every job once, none twice


def test_a_renewed_or_finished_job_is_not_claimed(store, rclient):
    _, record, start = started(store, rclient)
    _, other, other_start = started(store, rclient)
    lapse(rclient, record.id)
    lapse(rclient, other.id)
    ids = [i.decode() for i in rclient.zrangebyscore(names.LEASES, "-inf", time.time())]
    assert set(ids) == {record.id, other.id}
    store.renew({record.id: start.run})  # between the claimer's read and its script
    store.finish(other, JobStatus.SUCCEEDED, run=other_start.run)
    assert store.claim_lapsed() == []
    assert store.get(record.id).status == "running"


def test_the_old_message_is_skipped_and_the_old_run_cannot_finish(store, rclient):
    key_id, record, first = started(store, rclient, cost=2)
    lapse(rclient, record.id)  # w1 died (or stalled)
    store.claim_lapsed()
    second = store.start(record, 3, "w2@h")  # the claim's message
    assert second.verdict is Verdict.RUN and second.attempt == 2 and second.run == 3
    assert store.get(record.id).worker == "w2@h"
    stale = store.start(record, 3, "w3@h")  # the old message, restored by the broker later
    assert stale.verdict is Verdict.SKIP
    assert store.get(record.id).attempts == 2 and store.get(record.id).worker == "w2@h"
    # w1 was alive after all: its FINISH names run 1, which is no longer the job's. Nothing changes.
    assert store.end(record, JobStatus.SUCCEEDED, first.run, success(objects_found=9)) == Finish.LOST
    assert store.end(record, JobStatus.FAILED, first.run) == Finish.LOST
    job = store.get(record.id)
    assert job.status == "running" and job.objects_found is None and rclient.exists(names.hold(record.id))
    assert store.end(record, JobStatus.SUCCEEDED, second.run, success(objects_found=1)) == Finish.MOVED
    assert store.end(record, JobStatus.SUCCEEDED, second.run) == Finish.ENDED  # the same FINISH again: no change
    assert store.end(record, JobStatus.FAILED, first.run) == Finish.LOST
    assert Credits(rclient).balance(key_id) == 8  # charged once
    stats = {k.decode(): int(v) for k, v in rclient.hgetall(names.STATS).items()}
    assert stats["credits_committed"] == 2 and stats.get("credits_refunded", 0) == 0 and stats["jobs_succeeded"] == 1
    assert store.start(record, 3, "w3@h").verdict is Verdict.SKIP  # and once it ended, every message is skipped


def test_the_old_message_may_take_over_a_job_that_was_claimed_but_not_yet_started(store, rclient):
    _, record, _ = started(store, rclient)
    lapse(rclient, record.id)
    store.claim_lapsed()
    old = store.start(record, 3, "w2@h")  # the restored message came first: it runs the job
    assert old.verdict is Verdict.RUN and old.attempt == 2
    assert store.start(record, 3, "w3@h").verdict is Verdict.SKIP  # then the claim's message: held, skipped
    assert waiting(rclient) == set()


def test_a_retry_message_starts_under_its_own_runs_lease_and_no_other_does(store, rclient):
    _, record, first = started(store, rclient)
    store.renew({record.id: first.run}, lease_s=40)  # the task's retry: the lease covers the countdown
    assert store.start(record, 3, "w2@h").verdict is Verdict.SKIP  # a stale message: the job is held
    assert store.start(record, 3, "w2@h", retry_of=first.run + 5).verdict is Verdict.SKIP
    retry = store.start(record, 3, "w2@h", retry_of=first.run)
    assert retry.verdict is Verdict.RUN and retry.attempt == 2 and retry.run == first.run + 1
    assert store.start(record, 3, "w3@h", retry_of=first.run).verdict is Verdict.SKIP  # a second copy of it


def test_attempts_stay_bounded_however_often_workers_die(store, rclient):
    key_id, record, start = started(store, rclient, cost=3)
    runs = 1
    for worker in ("w2@h", "w3@h", "w4@h", "w5@h"):
        lapse(rclient, record.id)
        store.claim_lapsed()
        start = store.start(record, 3, worker)
        if start.verdict is not Verdict.RUN:
            break
        runs += 1
    assert runs == 3 and start.verdict is Verdict.EXHAUSTED  # ran at most SAMQ_MAX_ATTEMPTS times
    assert store.fail(record, "too_many_attempts", "x", 500)
    assert store.get(record.id).status == "failed" and Credits(rclient).balance(key_id) == 10
    assert rclient.zscore(names.LEASES, record.id) is None


def test_a_claimed_batch_job_moves_its_batch_counters_and_says_started_once(store, rclient):
    key_id = make_key(rclient, 10)
    jobs = new_jobs(key_id, n=2, batch_id="b1", webhook_url="https://example.com/h", webhook_events=["started"])
    store.accept(jobs, batch={"id": "b1", "key_id": key_id})
    record = store.get(jobs[0].id)
    store.start(record, 3, "w1@h")
    assert rclient.hget(names.batch("b1"), "running") == b"1"
    lapse(rclient, record.id)
    store.claim_lapsed()
    assert rclient.hmget(names.batch("b1"), "queued", "running") == [b"2", b"0"]
    before = rclient.zcard(names.OUTBOX)
    store.start(record, 3, "w2@h")
    assert rclient.hmget(names.batch("b1"), "queued", "running") == [b"1", b"1"]
    assert rclient.zcard(names.OUTBOX) == before  # job.started was written by the first attempt only


OPS = st.lists(st.tuples(st.sampled_from(["accept", "start", "stale_start", "die", "claim", "renew", "succeed",
                                          "fail", "stale_finish", "cancel"]), st.integers(0, 4)), max_size=50)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_ledger_holds_over_any_sequence_of_deaths_claims_and_stale_messages(rclient, ops):
    """Credits reserved = committed + refunded + held; each job settled once; at most max attempts per job."""
    rclient.flushdb()
    store = JobStore(rclient, retention_s=100, lease_s=30)
    key_id = make_key(rclient, 30)
    ids: list[str] = []
    runs: dict[str, list[int]] = {}  # every run each job was given, oldest first
    for op, index in ops:
        if op == "accept":
            [job] = new_jobs(key_id, cost=2)
            if Credits(rclient).balance(key_id) >= 2:
                store.accept([job])
                ids.append(job.id)
                runs[job.id] = []
            continue
        if not ids:
            continue
        job_id = ids[index % len(ids)]
        record = store.get(job_id)
        if op in ("start", "stale_start"):
            start = store.start(record, 3, f"w{index}@h")
            if start.verdict is Verdict.RUN:
                runs[job_id].append(start.run)
            elif start.verdict is Verdict.CANCEL:
                store.finish(record, JobStatus.CANCELED)
            elif start.verdict is Verdict.EXHAUSTED:
                store.fail(record, "too_many_attempts", "x", 500)
        elif op == "die":
            lapse(rclient, job_id)
        elif op == "claim":
            store.claim_lapsed()
        elif op == "renew" and runs[job_id]:
            store.renew({job_id: runs[job_id][-1]})
        elif op in ("succeed", "fail") and runs[job_id]:
            status = JobStatus.SUCCEEDED if op == "succeed" else JobStatus.FAILED
            store.end(record, status, runs[job_id][-1])
        elif op == "stale_finish" and len(runs[job_id]) > 1:
            assert store.end(record, JobStatus.SUCCEEDED, runs[job_id][0]) in (Finish.LOST, Finish.ENDED)
        elif op == "cancel":
            store.cancel(record)
    stats = {k.decode(): int(v) for k, v in rclient.hgetall(names.STATS).items()}
    held = sum(int(rclient.get(names.hold(i)) or 0) for i in ids)
    assert stats.get("credits_reserved", 0) == stats.get("credits_committed", 0) + stats.get("credits_refunded",
                                                                                              0) + held
    assert Credits(rclient).balance(key_id) == 30 - stats.get("credits_committed", 0) - held
    records = [store.get(i) for i in ids]
    ended = sum(stats.get(f"jobs_{s}", 0) for s in ("succeeded", "failed", "canceled"))
    assert ended == sum(r.status.terminal for r in records)  # each job settled at most once
    for r in records:
        assert len(runs[r.id]) <= 3  # never more runs than SAMQ_MAX_ATTEMPTS
        assert rclient.exists(names.hold(r.id)) == (not r.status.terminal)
        if r.status.terminal:
            assert rclient.zscore(names.LEASES, r.id) is None


def test_the_heartbeat_renews_what_its_worker_holds_and_another_worker_claims_what_lapsed(redis_url, tmp_path):
    """Two worker runtimes on one Redis, their heartbeats driven by hand: a renewal in one call per beat, a claim
    by the other worker once the lease lapsed (re-published to the job's queue), the lost run dropped."""
    from shared.celery_apps import make_celery
    from shared.settings import Settings
    from worker.runtime import Runtime

    settings = Settings(redis_url=redis_url, storage_url=f"file://{tmp_path}", worker_heartbeat_s=1, lease_s=5)
    a, b = (Runtime(settings, make_celery(settings)) for _ in range(2))
    rclient = a.redis
    _, record, start = started(a.jobs, rclient, worker="a@h")
    a.hold(record.id, start.run)
    for rt, name in ((a, "a@h"), (b, "b@h")):
        rt.beat_once(name)
    first = rclient.zscore(names.LEASES, record.id)
    time.sleep(0.05)
    a.beat_once("a@h")
    assert rclient.zscore(names.LEASES, record.id) > first  # renewed
    b.beat_once("b@h")
    assert store_status(a, record.id) == "running"  # a live lease: nobody claims it
    lapse(rclient, record.id)  # a stalled (its heartbeat stopped for a lease)
    assert b.beat_once("b@h") is None and store_status(b, record.id) == "queued"
    assert rclient.llen(names.QUEUE_NORMAL) == 1 and rclient.zscore(names.UNSENT, record.id) is None  # sent
    a.beat_once("a@h")  # a learns it lost the run: it stops renewing it
    assert a.held() == {}
    b.hold(record.id, 7)
    b.release(record.id, start.run)  # the end of another run of the job leaves this one held
    assert b.held() == {record.id: 7}


def store_status(rt, job_id: str) -> str:
    return rt.jobs.get(job_id).status
