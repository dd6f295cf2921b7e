"""Asynchronous jobs: submit, poll, result, ownership, failures and refunds."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.photos import ROCKET_JPG, b64, jpeg_bytes, open_image
from harness.procs import wait_until


def _poll(stack, key, job_id, timeout_s=60):
    seen = []

    def done():
        job = stack.get(f"/v1/jobs/{job_id}", key).json()
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        return job if job["status"] in ("succeeded", "failed", "canceled") else None

    return wait_until(done, timeout_s, f"job {job_id}", interval_s=0.02), seen


def test_submit_poll_result(stack, key):
    r = stack.post("/v1/jobs", {"image": b64(ROCKET_JPG), "prompt": "rocket", "metadata": {"batch": "b1"}}, key)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running") and job["id"] and job["created_at"]
    assert r.headers["Location"] == job["urls"]["self"]
    assert r.headers["x-remaining-credits"] == "9"
    final, seen = _poll(stack, key, job["id"])
    assert final["status"] == "succeeded", final
    assert seen == [s for s in ("queued", "running", "succeeded") if s in seen]  # never goes back
    assert final["attempts"] == 1 and final["finished_at"] >= final["started_at"] >= final["created_at"]
    assert final["metadata"] == {"batch": "b1"} and final["error"] is None
    assert final["objects_found"] == len(final["objects"])
    for obj in final["objects"]:
        assert obj["label"] == "rocket" and len(obj["box"]) == 4 and 0 <= obj["score"] <= 1
    result = stack.get(f"/v1/jobs/{job['id']}/result", key)
    assert result.status_code == 200 and result.headers["content-type"] == "image/jpeg"
    assert open_image(result.content).size == (640, 427)
    assert stack.get(final["urls"]["result"].replace(stack.url, "") + "?output=overlay_jpeg", key).content == \
        result.content
    bad = stack.get(f"/v1/jobs/{job['id']}/result?output=nope", key)
    assert bad.status_code == 400 and "overlay_jpeg" in bad.json()["error"]["message"]
    assert stack.balance(key) == 9


def test_coordinates_job_with_mask_output(stack, key):
    r = stack.post("/v1/jobs", {"image": b64(ROCKET_JPG), "coordinates": "[320,200]", "overlay_mask": False}, key)
    final, _ = _poll(stack, key, r.json()["id"])
    assert final["status"] == "succeeded" and final["outputs"] == ["mask_jpeg", "json"]
    assert final["objects"][0]["label"] == "points"


def test_another_keys_job_is_404(stack, key):
    job_id = stack.post("/v1/jobs", {"image": b64(ROCKET_JPG), "coordinates": "[1,1]"}, key).json()["id"]
    other = stack.new_key(3)
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/result"):
        r = stack.get(path, other)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert stack.get("/v1/jobs/does-not-exist", key).status_code == 404
    assert stack.get(f"/v1/jobs/{job_id}", None).status_code == 401


def test_failed_job_is_refunded_and_has_no_result(stack, key, image_host):
    with stack.paused():  # a free worker slot would fail the fetch before the balance is read
        r = stack.post("/v1/jobs", {"image": f"http://{image_host}/photos/missing.jpg", "prompt": "x"}, key)
        assert r.status_code == 202 and stack.balance(key) == 9
    final, _ = _poll(stack, key, r.json()["id"])
    assert final["status"] == "failed" and final["error"]["code"] == "fetch_failed"
    assert stack.balance(key) == 10
    result = stack.get(f"/v1/jobs/{final['id']}/result", key)
    assert result.status_code == 409 and result.json()["error"]["code"] == "no_result"


def test_unknown_fields_are_refused_for_jobs(stack, key):
    r = stack.post("/v1/jobs", {"image": b64(ROCKET_JPG), "promt": "boy"}, key)
    assert r.status_code == 400 and "promt" in r.json()["error"]["message"]
    assert stack.balance(key) == 10


def test_queued_job_result_is_409_and_sync_call_is_503_without_workers(bare):
    key = bare.new_key(5)
    r = bare.post("/v1/jobs", {"image": b64(ROCKET_JPG), "prompt": "boy"}, key)
    assert r.status_code == 202  # async jobs wait in the queue for a worker
    result = bare.get(f"/v1/jobs/{r.json()['id']}/result", key)
    assert result.status_code == 409 and result.json()["error"]["code"] == "not_finished"
    sync = bare.post("/v1/sam-v2-image", {"image": b64(ROCKET_JPG), "prompt": "boy"}, key)
    assert sync.status_code == 503 and sync.json()["error"]["code"] == "no_capacity"
    assert bare.balance(key) == 4  # only the queued job holds a credit
    ready = bare.get("/readyz", None)
    assert ready.status_code == 503 and ready.json()["workers"] is False


def test_429_rate_limit(bare):
    key = bare.new_key(5)
    time.sleep(max(0.0, 60 - time.time() % 60 + 0.1) if time.time() % 60 > 55 else 0)  # stay inside one window
    codes = [bare.get("/v1/credits", key).status_code for _ in range(8)]
    assert codes[:6] == [200] * 6 and codes[6:] == [429, 429]
    r = bare.get("/v1/credits", key)
    assert r.json()["error"]["code"] == "rate_limited"


def test_file_storage_backend_and_nothing_found(file_stack):
    key = file_stack.new_key(3)
    r = file_stack.post("/v1/sam-v2-image", {"image": b64(ROCKET_JPG), "prompt": "rocket"}, key)
    assert r.status_code == 200 and r.headers["x-objects-found"] == "0"
    original = np.asarray(open_image(jpeg_bytes(Image.open(ROCKET_JPG), quality=90)), dtype=float)
    assert np.abs(np.asarray(open_image(r.content), dtype=float) - original).mean() < 1  # image unchanged
    root = Path(file_stack.settings.storage.removeprefix("file://"))
    job_id = r.headers["x-job-id"]
    assert (root / "inputs" / job_id).read_bytes() == ROCKET_JPG.read_bytes()
    assert (root / "results" / job_id / "overlay.jpg").read_bytes() == r.content
    assert file_stack.balance(key) == 2


@pytest.mark.timeout(120)
def test_server_fault_is_500_json_and_refunded(broken_stack):
    key = broken_stack.new_key(4)
    r = broken_stack.post("/v1/sam-v2-image", {"image": b64(ROCKET_JPG), "coordinates": "[5,5]"}, key)
    assert r.status_code == 500 and r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == "internal_error"
    assert broken_stack.balance(key) == 4


def test_metrics_openapi_and_docs(stack, key):
    before = stack.get("/metrics", None).text
    job_id = stack.post("/v1/jobs", {"image": b64(ROCKET_JPG), "coordinates": "[5,5]"}, key).json()["id"]
    _poll(stack, key, job_id)
    text = stack.get("/metrics", None).text
    assert 'samq_queue_depth{queue="samq.infer.normal"}' in text and "samq_workers_alive 1.0" in text

    def count(body, event):
        line = next((ln for ln in body.splitlines() if ln.startswith(f'samq_jobs_total{{event="{event}"}}')), None)
        return float(line.split()[-1]) if line else 0.0

    assert count(text, "accepted") == count(before, "accepted") + 1
    assert count(text, "succeeded") == count(before, "succeeded") + 1
    spec = stack.get("/openapi.json", None)
    assert spec.status_code == 200 and spec.json()["openapi"] == "3.1.0"
    docs = stack.get("/docs", None)
    assert docs.status_code == 200 and "/openapi.json" in docs.text
