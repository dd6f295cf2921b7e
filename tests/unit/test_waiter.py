"""The gateway's completion waiter: one pub/sub listener per process wakes the calls waiting on their jobs."""

from __future__ import annotations

import threading
import time

from gateway.waiter import RECHECK_S, CompletionWaiter
from shared.jobs import JobStore, new_id
from shared.keys import KeyStore, hash_key
from shared.records import JobRecord, JobStatus
from tests.helpers import success


def _queued_job(rclient, store: JobStore) -> dict:
    key_id = hash_key(KeyStore(rclient).create(10))
    job = JobRecord(id=new_id(), key_id=key_id, params={"prompt": "x"}, cost=1,
                 queue="samq.infer.normal", priority="normal")
    store.accept([job])
    return store.get(job.id)


def test_waiters_wake_on_their_own_job_finishing_and_share_one_connection(rclient):
    store = JobStore(rclient, retention_s=100)
    waiter = CompletionWaiter(rclient)
    jobs = [_queued_job(rclient, store) for _ in range(6)]
    results: dict[str, tuple[dict, float]] = {}

    def subscribers() -> int:  # on the whole server: other tests' gateways may still be listening
        return sum(int(c["sub"]) + int(c["psub"]) > 0 for c in rclient.client_list())

    before = subscribers()

    def wait(job_id: str) -> None:
        results[job_id] = (waiter.wait(store, job_id, 10), time.monotonic())

    threads = [threading.Thread(target=wait, args=(job.id,)) for job in jobs]
    for t in threads:
        t.start()
    time.sleep(0.3)
    listening = subscribers() - before
    finished_at = time.monotonic()
    for job in jobs[:3]:
        store.finish(job, JobStatus.SUCCEEDED, success=success())
    for t in threads[:3]:
        t.join(timeout=5)

    assert all(results[j.id][0].status == "succeeded" for j in jobs[:3])
    assert all(results[j.id][1] - finished_at < RECHECK_S / 2 for j in jobs[:3])  # woken, not polled
    assert not any(j.id in results for j in jobs[3:])  # the others still wait
    assert listening == 1  # one listener, not one subscription per waiting caller
    for job in jobs[3:]:
        store.finish(job, JobStatus.FAILED)
    for t in threads[3:]:
        t.join(timeout=5)
    assert all(results[j.id][0].status == "failed" for j in jobs[3:])


def test_waiting_returns_at_once_for_a_terminal_job_and_after_the_timeout_otherwise(rclient):
    store = JobStore(rclient, retention_s=100)
    waiter = CompletionWaiter(rclient)
    done, pending = _queued_job(rclient, store), _queued_job(rclient, store)
    store.finish(done, JobStatus.CANCELED)

    start = time.monotonic()
    assert waiter.wait(store, done.id, 5).status == "canceled"
    assert time.monotonic() - start < 0.5
    start = time.monotonic()
    assert waiter.wait(store, pending.id, 0.3).status == "queued"
    assert 0.3 <= time.monotonic() - start < 1.5
    assert waiter.wait(store, "missing", 1) is None
