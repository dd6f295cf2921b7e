"""Submission at scale over HTTP: validation before capacity, Retry-After, idempotency, cancel, priority,
batches, retention. Real gunicorn, Celery workers, Redis and the S3 server."""

from __future__ import annotations

import base64
import io
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import numpy as np
import pytest
from PIL import Image

from harness.photos import ROCKET_JPG, b64
from harness.procs import wait_until
from harness.stack import new_stack, running, serve_slow_photo
from shared import names
from shared.storage import make_storage
from tests.helpers import wait_for_batch, wait_for_job


def _b64png(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


SMALL = _b64png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)))
FLAT = _b64png(Image.new("RGB", (32, 32), (90, 140, 200)))  # about 100 bytes: a 1,000-item batch stays small


def _job(prompt_or_point="[10,10]", **extra) -> dict:
    return {"image": SMALL, "coordinates": prompt_or_point, "outputs": ["json"], **extra}


@pytest.fixture(scope="module")
def idle(tmp_path_factory, model_dir, s3_endpoint, redis_server):
    """A gateway with no worker (jobs stay queued) and no rate limit."""
    st = new_stack(6, tmp_path_factory.mktemp("idle"), model_dir, s3_endpoint, SAMQ_RATE_LIMIT_PER_MIN="0")
    with running(st):
        yield st


# -- with no worker at all (the `bare` stack): 4xx first, then 503 with Retry-After ----------------------------

@pytest.mark.parametrize(("body", "status", "code"), [
    ({"image": SMALL}, 400, "invalid_request"),  # neither prompt nor coordinates
    ({"image": base64.b64encode(b"not an image at all").decode(), "prompt": "x"}, 422, "undecodable_image"),
    ({"image": SMALL, "coordinates": "[900,900]"}, 400, "invalid_request"),  # outside the image
])
def test_bad_requests_get_their_4xx_even_with_no_worker(bare, body, status, code):
    key = bare.new_key(5)
    r = bare.post("/v1/sam-v2-image", body, key)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    assert bare.balance(key) == 5


def test_no_credits_is_406_and_a_good_request_is_503_with_retry_after(bare):
    broke = bare.new_key(0)
    r = bare.post("/v1/sam-v2-image", {"image": SMALL, "prompt": "x"}, broke)
    assert r.status_code == 406, r.text
    key = bare.new_key(5)
    r = bare.post("/v1/sam-v2-image", {"image": SMALL, "prompt": "x"}, key)
    assert r.status_code == 503 and r.json()["error"]["code"] == "no_capacity"
    assert int(r.headers["Retry-After"]) > 0
    assert bare.balance(key) == 5 and bare.job_count() == 0


def test_rate_limit_answers_429_with_retry_after(bare):
    key = bare.new_key(5)
    codes = [bare.get("/v1/credits", key) for _ in range(14)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited and 1 <= int(limited[0].headers["Retry-After"]) <= 60


def test_idempotent_submits_under_concurrency_give_one_job_and_one_charge(idle):
    key = idle.new_key(20)
    headers = {"Idempotency-Key": "order-42"}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: idle.post("/v1/jobs", _job(), key, headers=headers), range(8)))
    assert [r.status_code for r in answers] == [202] * 8
    assert len({r.json()["id"] for r in answers}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in answers) == 7
    assert idle.balance(key) == 19
    # A later retry gets the very same answer; the same key with another body is refused.
    assert idle.post("/v1/jobs", _job(), key, headers=headers).json() == answers[0].json()
    r = idle.post("/v1/jobs", _job("[11,11]"), key, headers=headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "idempotency_mismatch"
    assert idle.balance(key) == 19


def test_cancel_a_queued_job_refunds_at_once(idle):
    key = idle.new_key(3)
    job_id = idle.post("/v1/jobs", _job(), key).json()["id"]
    assert idle.balance(key) == 2
    assert idle.post(f"/v1/jobs/{job_id}/cancel", {}, idle.new_key(1)).status_code == 404  # another key's job
    r = idle.post(f"/v1/jobs/{job_id}/cancel", {}, key)
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    assert idle.balance(key) == 3
    again = idle.post(f"/v1/jobs/{job_id}/cancel", {}, key)
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_cancelable"
    assert not idle.redis.zscore(names.waiting(names.QUEUE_NORMAL), job_id)


def test_a_batch_with_a_bad_item_is_refused_whole(idle):
    key = idle.new_key(10)
    before = idle.job_count()
    items = [_job() for _ in range(6)]
    items[5] = _job("[1,2,3]")
    r = idle.post("/v1/batches", {"items": items}, key)
    assert r.status_code == 400 and "items[5].coordinates" in r.json()["error"]["message"], r.text
    items[5] = {"image": SMALL}
    r = idle.post("/v1/batches", {"items": items}, key)
    assert r.status_code == 400 and "items[5]" in r.json()["error"]["message"], r.text
    assert idle.balance(key) == 10 and idle.job_count() == before


def test_a_thousand_item_batch_is_accepted_paged_and_canceled(idle):
    key = idle.new_key(1000)
    items = [_job(priority="low", image=FLAT) for _ in range(1000)]
    started = time.monotonic()
    r = idle.post("/v1/batches", {"items": items, "metadata": {"run": 7}}, key, headers={"Idempotency-Key": "b1"})
    took = time.monotonic() - started
    assert r.status_code == 202, r.text
    batch = r.json()
    assert len(batch["job_ids"]) == 1000 and batch["total"] == 1000 and idle.balance(key) == 0
    print(f"1000-item batch accepted in {took:.2f} s")
    page = idle.get(f"/v1/batches/{batch['id']}?limit=400", key).json()
    assert page["counts"]["queued"] == 1000 and len(page["jobs"]) == 400 and page["next_cursor"] == 400
    assert [j["id"] for j in page["jobs"]] == batch["job_ids"][:400]
    last = idle.get(f"/v1/batches/{batch['id']}?cursor=800&limit=400", key).json()
    assert len(last["jobs"]) == 200 and last["next_cursor"] is None and last["metadata"] == {"run": 7}
    assert idle.get(f"/v1/batches/{batch['id']}", idle.new_key(1)).status_code == 404
    assert idle.redis.zcard(names.waiting(names.QUEUE_LOW)) == 1000
    r = idle.post(f"/v1/batches/{batch['id']}/cancel", {}, key)
    assert r.status_code == 200 and r.json()["counts"]["canceled"] == 1000 and r.json()["status"] == "completed"
    assert idle.balance(key) == 1000 and idle.redis.zcard(names.waiting(names.QUEUE_LOW)) == 0


# -- with workers (the main `stack`) --------------------------------------------------------------------------

def test_finished_jobs_leave_no_waiting_entry(stack):
    key = stack.new_key(5)
    ids = [stack.post("/v1/jobs", _job(), key).json()["id"] for _ in range(4)]
    for job_id in ids:
        assert wait_for_job(stack, key, job_id, timeout_s=60)["status"] == "succeeded"
    waiting = {m.decode() for q in names.INFER_QUEUES for m in stack.redis.zrange(names.waiting(q), 0, -1)}
    assert not waiting & set(ids)
    assert not {m.decode() for m in stack.redis.zrange(names.UNSENT, 0, -1)} & set(ids)


def test_a_batch_runs_to_completion(stack):
    key = stack.new_key(3)
    r = stack.post("/v1/batches", {"items": [_job(), _job("[5,5]"), {**_job(), "image": b64(ROCKET_JPG)}]}, key)
    assert r.status_code == 202, r.text
    batch_id = r.json()["id"]
    done = wait_for_batch(stack, key, batch_id, 90, interval_s=0.1)
    assert done["counts"]["succeeded"] == 3 and done["finished_at"] and stack.balance(key) == 0
    assert {j["status"] for j in done["jobs"]} == {"succeeded"}


def test_high_priority_jumps_thirty_queued_low_jobs(batch_stack):
    """No worker yet: 30 low jobs wait, then one high job; the worker starts the high one before the last low."""
    key = batch_stack.new_key(40)
    low = batch_stack.post("/v1/batches", {"items": [_job() for _ in range(30)], "priority": "low"}, key).json()
    high = batch_stack.post("/v1/jobs", _job(priority="high"), key).json()
    assert high["priority"] == "high"
    batch_stack.start_worker("wprio", SAMQ_ENCODER_BATCH="1")
    try:
        high_done = wait_for_job(batch_stack, key, high["id"], timeout_s=120)
        last_low = wait_for_job(batch_stack, key, low["job_ids"][-1], timeout_s=180)
        assert high_done["started_at"] < last_low["started_at"]
    finally:
        batch_stack.procs.pop("wprio").kill()


@pytest.fixture(scope="module")
def short(tmp_path_factory, model_dir, s3_endpoint, redis_server):
    """Jobs kept 3 s after they end; image URLs on a slow loopback server are allowed."""
    server, host = serve_slow_photo()
    st = new_stack(7, tmp_path_factory.mktemp("short"), model_dir, s3_endpoint, SAMQ_RETENTION_S="3",
                   SAMQ_FETCH_ALLOW_HOSTS=host)
    st.slow_url = f"http://{host}/rocket.jpg"
    with running(st, {"ws": {}}):
        yield st
    server.shutdown()


def _s3_objects(st, job_id: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=st.env["SAMQ_S3_ENDPOINT_URL"], aws_access_key_id="test",
                      aws_secret_access_key="test", region_name="us-east-1")
    listing = s3.list_objects_v2(Bucket=st.env["SAMQ_S3_BUCKET"]).get("Contents", [])
    return [o["Key"] for o in listing if job_id in o["Key"]]


def test_cancel_a_running_job_uploads_nothing_and_refunds(short):
    key = short.new_key(2)
    job = short.post("/v1/jobs", {"image": short.slow_url, "coordinates": "[100,100]"}, key).json()
    wait_for_job(short, key, job["id"], ("running",), 30, "running")
    r = short.post(f"/v1/jobs/{job['id']}/cancel", {}, key)
    assert r.status_code == 202 and r.json()["cancel_requested"] is True and r.json()["status"] == "running"
    done = wait_for_job(short, key, job["id"], timeout_s=60)
    assert done["status"] == "canceled" and done["outputs"] == []
    assert short.balance(key) == 2
    assert _s3_objects(short, job["id"]) == []  # no result was uploaded after the cancel


def test_retention_expires_records_and_sweeps_stored_objects(short):
    key = short.new_key(2)
    job = short.post("/v1/jobs", {"image": b64(ROCKET_JPG), "coordinates": "[100,100]"}, key).json()
    assert wait_for_job(short, key, job["id"], timeout_s=60)["status"] == "succeeded"
    objects = _s3_objects(short, job["id"])
    assert any(k.startswith("inputs/") for k in objects) and any(k.startswith("results/") for k in objects)
    wait_until(lambda: not _s3_objects(short, job["id"]), 30, "the sweep to delete the job's objects")
    r = short.get(f"/v1/jobs/{job['id']}/result", key)
    assert r.status_code == 404 and r.json()["error"]["code"] == "expired", r.text
    assert short.get("/v1/jobs/0123", key).json()["error"]["code"] == "not_found"  # never a job: plain 404
    # The bucket's lifecycle rule, the backstop for objects a sweep missed, is set on the real S3 server.
    make_storage(short.settings).ensure(short.settings.lifecycle_days)
    s3 = boto3.client("s3", endpoint_url=short.env["SAMQ_S3_ENDPOINT_URL"], aws_access_key_id="test",
                      aws_secret_access_key="test", region_name="us-east-1")
    rules = s3.get_bucket_lifecycle_configuration(Bucket=short.env["SAMQ_S3_BUCKET"])["Rules"]
    assert {r["Filter"]["Prefix"] for r in rules} == {"inputs/", "results/"}
    assert all(r["Expiration"]["Days"] == 2 for r in rules)
