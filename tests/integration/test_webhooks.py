"""Webhook delivery through the real webhook worker process to receivers on loopback.

The stack's webhook worker runs with SAMQ_WEBHOOK_TIMEOUT_S=2 and SAMQ_WEBHOOK_RETRY_SCHEDULE_S=0,1,2.
Signatures are checked with the standardwebhooks package, not with our own code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from harness.photos import ROCKET_JPG, b64
from harness.procs import wait_until
from harness.receiver import Receiver
from shared import names, outbox, webhooks
from shared.celery_apps import make_webhook_celery
from shared.jobs import JobStore, new_id
from shared.keys import hash_key
from shared.records import JobRecord, JobStatus
from shared.webhooks import Event

SCHEDULE = (0, 1, 2)


@pytest.fixture(scope="module")
def receiver():
    rec = Receiver()
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def webhook_app(stack):
    return make_webhook_celery(stack.settings)


@pytest.fixture
def secret(stack, key) -> str:
    return stack.get("/v1/webhooks/secret", key).json()["secret"]


def new_job(stack, key: str) -> str:
    """A finished job record of `key` (as the GPU worker leaves it), with a retention TTL."""
    job_id = uuid.uuid4().hex
    stack.redis.hset(names.job(job_id), mapping={
        "id": job_id, "status": "succeeded", "key_id": hash_key(key), "created_at": "2026-12-01T00:00:00.000Z",
        "finished_at": "2026-12-01T00:00:01.000Z", "attempts": 1, "objects": "[]", "outputs": "{}",
    })
    stack.redis.expire(names.job(job_id), 3600)
    return job_id


def emit(stack, webhook_app, key: str, job_id: str, url: str, type_: str = "job.succeeded") -> Event:
    """Write an event to the outbox as the job's Lua step does, then publish it as its caller does."""
    event = Event(id=f"msg_{uuid.uuid4().hex}", type=type_, key_id=hash_key(key), url=url, at=time.time(),
                  job_id=job_id)
    stack.redis.zadd(names.OUTBOX, {event.to_json(): event.at})
    outbox.publish(webhook_app, stack.redis, [event.to_json()])
    return event


def log_of(stack, key: str, job_id: str, count: int, timeout_s: float = 20) -> list[dict]:
    """The job's delivery log once it has `count` attempts."""
    def ready():
        items = stack.get(f"/v1/jobs/{job_id}/deliveries", key).json()["deliveries"]
        return items if len(items) >= count else None
    return wait_until(ready, timeout_s, f"{count} logged deliveries")


def test_fails_twice_then_accepts_three_attempts_one_id_all_signed(stack, key, secret, receiver, webhook_app):
    job_id = new_job(stack, key)
    url = receiver.url("flaky", 500, 503, ("hang", 0.3))  # the third answer (200) takes 0.3 s
    emitted_at = time.time()
    event = emit(stack, webhook_app, key, job_id, url)
    log = log_of(stack, key, job_id, 3)
    logged_at = time.time()
    time.sleep(1)  # nothing more may come
    calls = receiver.calls["flaky"]
    assert len(calls) == 3 and {c.webhook_id for c in calls} == {event.id}
    payloads = [c.verify(secret) for c in calls]
    assert payloads[0] == {"type": "job.succeeded", "timestamp": payloads[0]["timestamp"],
                           "data": stack.get(f"/v1/jobs/{job_id}", key).json()}
    assert [(e["n"], e["attempt"], e["status"]) for e in log] == [(1, 1, 500), (2, 2, 503), (3, 3, 200)]
    assert all(e["event"] == event.id and e["type"] == "job.succeeded" for e in log)
    # Each attempt's duration is its own call's: the held answer shows in the third, and all three together fit
    # in the time from the event to its third log entry (every attempt starts after one and ends before the other).
    durations = [e["duration_ms"] for e in log]
    assert 300 <= durations[2] < 2000  # under the stack's 2 s webhook timeout, else it would be an error
    assert sum(durations) <= (logged_at - emitted_at) * 1000, (durations, logged_at - emitted_at)
    # Delays against the schedule (jitter is +-10%; the pump looks every 0.5 s).
    gaps = [b.at - a.at for a, b in zip(calls, calls[1:], strict=False)]
    print(f"\nfigures: attempts={len(calls)} gaps_s={[round(g, 2) for g in gaps]} schedule_s={SCHEDULE[1:]}")
    for gap, planned in zip(gaps, SCHEDULE[1:], strict=True):
        assert planned * 0.9 <= gap <= planned * 1.1 + 1.0
    assert stack.redis.zcard(names.OUTBOX) == 0 and stack.redis.ttl(names.deliveries(job_id)) > 3500


def test_410_disables_the_url_until_enabled_again(stack, key, receiver, webhook_app):
    job_id = new_job(stack, key)
    url = receiver.url("gone", 410)
    emit(stack, webhook_app, key, job_id, url)
    assert log_of(stack, key, job_id, 1)[0]["status"] == 410
    assert [u["url"] for u in stack.get("/v1/webhooks/disabled", key).json()["urls"]] == [url]
    emit(stack, webhook_app, key, job_id, url, "job.failed")  # dropped, and logged as dropped
    dropped = log_of(stack, key, job_id, 2)[1]
    assert dropped["status"] is None and "disabled" in dropped["error"]
    assert len(receiver.calls["gone"]) == 1
    # Redelivery to a disabled URL is refused with a reason.
    refused = stack.post(f"/v1/jobs/{job_id}/deliveries/1/redeliver", None, key)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "webhook_disabled"
    enabled = stack.post("/v1/webhooks/enable", {"url": url}, key)
    assert enabled.json() == {"url": url, "enabled": True, "was_disabled": True}
    emit(stack, webhook_app, key, job_id, url)
    assert log_of(stack, key, job_id, 3)[2]["status"] == 200 and len(receiver.calls["gone"]) == 2


def test_a_receiver_slower_than_the_timeout_is_retried(stack, key, receiver, webhook_app):
    job_id = new_job(stack, key)
    emit(stack, webhook_app, key, job_id, receiver.url("slow", ("hang", 4)))
    log = log_of(stack, key, job_id, 2)
    assert log[0]["status"] is None and "timed out" in log[0]["error"] and 1900 <= log[0]["duration_ms"] < 3500
    assert log[1]["status"] == 200 and len(receiver.calls["slow"]) == 2


def test_redirects_are_not_followed_and_are_logged(stack, key, receiver, webhook_app):
    job_id = new_job(stack, key)
    target = receiver.url("redirect-target")
    emit(stack, webhook_app, key, job_id, receiver.url("redirect", (307, {"Location": target})))
    entry = log_of(stack, key, job_id, 1)[0]
    time.sleep(1.5)
    assert entry["status"] == 307 and "not followed" in entry["error"] and target in entry["error"]
    assert len(receiver.calls["redirect"]) == 1 and receiver.calls["redirect-target"] == []


def test_retry_after_is_honoured(stack, key, receiver, webhook_app):
    job_id = new_job(stack, key)
    emit(stack, webhook_app, key, job_id, receiver.url("busy", (429, {"Retry-After": "3"})))
    log_of(stack, key, job_id, 2)
    first, second = receiver.calls["busy"]
    assert second.at - first.at >= 3.0  # the schedule alone would have waited about 1 s


def test_rotation_signs_with_both_secrets_during_the_overlap(stack, key, secret, receiver, webhook_app):
    rotated = stack.post("/v1/webhooks/secret/rotate", None, key).json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
    assert stack.get("/v1/webhooks/secret", key).json()["secret"] == rotated["secret"]
    job_id = new_job(stack, key)
    emit(stack, webhook_app, key, job_id, receiver.url("rotated"))
    log_of(stack, key, job_id, 1)
    (call,) = receiver.calls["rotated"]
    assert len(call.headers["webhook-signature"].split(" ")) == 2
    assert call.verify(secret) == call.verify(rotated["secret"])


def test_redeliver_sends_the_same_webhook_id_again(stack, key, secret, receiver, webhook_app):
    job_id = new_job(stack, key)
    event = emit(stack, webhook_app, key, job_id, receiver.url("picky", 400))
    assert log_of(stack, key, job_id, 1)[0]["status"] == 400  # a 4xx is not retried
    answer = stack.post(f"/v1/jobs/{job_id}/deliveries/1/redeliver", None, key)
    assert answer.status_code == 202 and answer.json()["event"] == event.id
    log = log_of(stack, key, job_id, 2)
    assert log[1]["status"] == 200 and log[1]["event"] == event.id
    assert [c.webhook_id for c in receiver.calls["picky"]] == [event.id, event.id]
    receiver.calls["picky"][1].verify(secret)
    assert stack.post(f"/v1/jobs/{job_id}/deliveries/9/redeliver", None, key).status_code == 404
    other = stack.new_key()
    assert stack.get(f"/v1/jobs/{job_id}/deliveries", other).status_code == 404


def test_an_event_whose_publisher_died_is_swept_from_the_outbox(stack, key, receiver):
    job_id = new_job(stack, key)
    event = Event(id=f"msg_{uuid.uuid4().hex}", type="job.succeeded", key_id=hash_key(key),
                  url=receiver.url("swept"), at=time.time() - 60, job_id=job_id)
    stack.redis.zadd(names.OUTBOX, {event.to_json(): event.at})  # written, never published
    assert log_of(stack, key, job_id, 1)[0]["status"] == 200
    assert [c.webhook_id for c in receiver.calls["swept"]] == [event.id]
    assert stack.redis.zcard(names.OUTBOX) == 0


def test_killed_mid_delivery_the_event_is_delivered_after_restart(stack, key, secret, receiver, webhook_app):
    job_id = new_job(stack, key)
    event = emit(stack, webhook_app, key, job_id, receiver.url("outage", ("hang", 30)))
    wait_until(lambda: receiver.calls["outage"], 10, "the first attempt")
    stack.kill("webhooks")  # SIGKILL while the attempt is in flight: nothing logged, nothing acked
    killed_at = time.time()
    try:
        assert stack.get(f"/v1/jobs/{job_id}/deliveries", key).json()["deliveries"] == []
    finally:
        stack.start_webhook_worker()
    log = log_of(stack, key, job_id, 1, timeout_s=30)
    delivered = receiver.calls["outage"][-1]
    print(f"\nfigures: delivered {delivered.at - killed_at:.1f} s after the kill "
          f"(visibility timeout {2 * stack.settings.webhook_timeout_s + 5:g} s)")
    assert log[0]["status"] == 200 and log[0]["attempt"] == 1  # the broker's redelivery, not a retry
    assert delivered.webhook_id == event.id and delivered.verify(secret)["type"] == "job.succeeded"


def test_a_job_submitted_with_a_webhook_reports_start_and_success(stack, key, secret, receiver):
    url = receiver.url("e2e")
    body = {"image": b64(ROCKET_JPG), "coordinates": [[320, 200]], "outputs": ["mask_png"], "webhook_url": url,
            "webhook_events": ["started", "completed"]}
    job_id = stack.post("/v1/jobs", body, key).json()["id"]
    log = log_of(stack, key, job_id, 2, timeout_s=60)
    calls = receiver.calls["e2e"]
    payloads = [c.verify(secret) for c in calls]
    assert [p["type"] for p in payloads] == ["job.started", "job.succeeded"]
    assert len({c.webhook_id for c in calls}) == 2 and [e["status"] for e in log] == [200, 200]
    shown = stack.get(f"/v1/jobs/{job_id}", key).json()
    data = payloads[1]["data"]
    assert data["id"] == job_id and data["status"] == "succeeded" and data["outputs"] == shown["outputs"]
    assert {k: v for k, v in data.items() if k != "urls"} == {k: v for k, v in shown.items() if k != "urls"}
    assert data["urls"]["outputs"].keys() == shown["urls"]["outputs"].keys()  # presigned: signed at different times


def test_a_private_webhook_url_is_refused_at_submit_naming_the_field(stack, key):
    body = {"image": b64(ROCKET_JPG), "coordinates": [[320, 200]], "webhook_url": "http://10.0.0.1/hook"}
    answer = stack.post("/v1/jobs", body, key)
    assert answer.status_code == 400 and "webhook_url" in answer.json()["error"]["message"]
    assert stack.balance(key) == 10


def test_a_batch_reports_completed_once_with_the_batch_as_data(stack, key, secret, receiver):
    item = {"image": b64(ROCKET_JPG), "coordinates": [[320, 200]], "outputs": ["mask_png"]}
    answer = stack.post("/v1/batches", {"items": [item, item], "webhook_url": receiver.url("batch")}, key)
    batch_id = answer.json()["id"]
    wait_until(lambda: receiver.calls["batch"], 60, "batch.completed")
    time.sleep(1.5)  # a second one would have come by now
    (call,) = receiver.calls["batch"]
    payload = call.verify(secret)
    shown = stack.get(f"/v1/batches/{batch_id}", key).json()
    assert payload["type"] == "batch.completed" and payload["data"]["id"] == batch_id
    assert payload["data"]["counts"] == shown["counts"] and shown["counts"]["succeeded"] == 2
    assert [e["status"] for e in webhooks.deliveries(stack.redis, batch_id)] == [200]
    logged = stack.get(f"/v1/batches/{batch_id}/deliveries", key).json()["deliveries"]
    assert [(d["n"], d["type"], d["status"]) for d in logged] == [(1, "batch.completed", 200)]
    assert stack.get(f"/v1/batches/{batch_id}/deliveries", stack.new_key(1)).status_code == 404


def test_batch_completed_is_delivered_once_when_its_last_two_jobs_end_together(stack, key, secret, receiver,
                                                                               webhook_app):
    # Two workers' FINISH steps released by one barrier, each publishing what its Lua step wrote.
    key_id, batch_id = hash_key(key), new_id()
    jobs = [JobRecord(id=new_id(), key_id=key_id, params={"prompt": "x"}, cost=1,
                   queue=names.QUEUE_NORMAL, batch_id=batch_id) for _ in range(2)]
    store = JobStore(stack.redis, 3600)
    store.accept(jobs, batch={"id": batch_id, "key_id": key_id, "webhook_url": receiver.url("together")})
    store.sent([j.id for j in jobs])  # never given to the GPU worker: this test plays the two workers
    barrier = threading.Barrier(2)

    def worker(job_id: str) -> None:
        client = redis.Redis.from_url(stack.env["SAMQ_REDIS_URL"])
        own = JobStore(client, 3600, outbox.publisher(webhook_app, client))
        job = own.get(job_id)
        own.start(job, 3)
        barrier.wait()
        own.finish(job, JobStatus.SUCCEEDED)

    threads = [threading.Thread(target=worker, args=(j.id,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_until(lambda: receiver.calls["together"], 20, "batch.completed")
    time.sleep(1.5)
    (call,) = receiver.calls["together"]
    assert call.verify(secret)["data"]["counts"]["succeeded"] == 2


def test_gpu_worker_keeps_working_while_every_receiver_hangs(stack, key, receiver, webhook_app):
    hang_key = stack.new_key(100)
    job_id = new_job(stack, hang_key)
    for i in range(40):  # more than the webhook worker's 32 threads
        emit(stack, webhook_app, hang_key, job_id, receiver.url(f"hang{i}", ("hang", 30), ("hang", 30)))
    wait_until(lambda: sum(len(receiver.calls[f"hang{i}"]) for i in range(40)) >= 32, 20, "hanging receivers")
    started = time.monotonic()
    hang = ("hang", 30)
    body = {"image": b64(ROCKET_JPG), "coordinates": [[320, 200]], "outputs": ["mask_png"],
            "webhook_url": receiver.url("hang-jobs", *[hang] * 4), "webhook_events": ["started", "completed"]}
    ids = [stack.post("/v1/jobs", body, key).json()["id"] for _ in range(2)]
    wait_until(lambda: all(stack.get(f"/v1/jobs/{i}", key).json()["status"] == "succeeded" for i in ids),
               60, "jobs to succeed")
    elapsed = time.monotonic() - started
    print(f"\nfigures: 2 jobs (with webhooks) succeeded in {elapsed:.1f} s while 40+ receivers hang for 30 s")
    assert elapsed < 20  # had a delivery held the GPU worker, one hang alone would take 30 s
    assert stack.redis.zcard(names.OUTBOX) == 0  # the jobs' events were handed over at once


def test_the_webhook_worker_loads_no_model_code():
    probe = ("import sys, worker.webhook_app as w; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'sam2'}), "
             "w.app.conf.broker_transport_options['global_keyprefix'])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}).stdout.split()
    assert out == ["[]", names.WEBHOOK_BROKER_PREFIX]
