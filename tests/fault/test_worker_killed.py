"""SIGKILL a worker mid-job: the job is redelivered, finishes once, and is charged once; bounded attempts."""

from __future__ import annotations

import base64
import threading

import numpy as np
import pytest
import requests
from PIL import Image

from shared import names
from tests.helpers import jpeg_bytes, wait_until

pytestmark = pytest.mark.timeout(300)


def _slow_image() -> str:
    # A 24-megapixel photo-like picture: big enough that the worker is busy for a while.
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:4000, 0:6000]
    base = np.stack([(x / 6000 * 255), (y / 4000 * 255), ((x + y) % 256)], axis=-1)
    noisy = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    return base64.b64encode(jpeg_bytes(Image.fromarray(noisy), quality=80)).decode()


@pytest.fixture(scope="module")
def slow_image() -> str:
    return _slow_image()


def _status(stack, key, job_id):
    return stack.get(f"/v1/jobs/{job_id}", key).json()


def _kill_while_running(stack, key, job_id, worker, attempt):
    wait_until(lambda: (j := _status(stack, key, job_id))["status"] == "running" and j["attempts"] == attempt,
               120, f"attempt {attempt} running", interval_s=0.01)
    stack.kill(worker)


def test_killed_worker_job_is_redelivered_and_charged_once(fault_stack, slow_image):
    key = fault_stack.new_key(5)
    r = fault_stack.post("/v1/jobs", {"image": slow_image, "coordinates": "[3000,2000]"}, key)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    _kill_while_running(fault_stack, key, job_id, "w1", attempt=1)
    assert _status(fault_stack, key, job_id)["status"] == "running"  # nobody finished it
    fault_stack.start_worker("w2")
    final = wait_until(lambda: (j := _status(fault_stack, key, job_id))["status"] in ("succeeded", "failed") and j,
                       180, "redelivered job to finish", interval_s=0.2)
    assert final["status"] == "succeeded" and final["attempts"] == 2
    assert fault_stack.balance(key) == 4  # charged exactly once
    assert fault_stack.get(f"/v1/jobs/{job_id}/result", key).status_code == 200


def test_a_job_that_keeps_killing_workers_ends_failed_and_refunded(fault_stack, slow_image):
    key = fault_stack.new_key(5)
    job_id = fault_stack.post("/v1/jobs", {"image": slow_image, "coordinates": "[3000,2000]"}, key).json()["id"]
    _kill_while_running(fault_stack, key, job_id, "w1", attempt=1)
    fault_stack.start_worker("w2")
    _kill_while_running(fault_stack, key, job_id, "w2", attempt=2)
    fault_stack.start_worker("w3")
    final = wait_until(lambda: (j := _status(fault_stack, key, job_id))["status"] in ("succeeded", "failed") and j,
                       180, "poison job to end", interval_s=0.2)
    assert final["status"] == "failed" and final["error"]["code"] == "too_many_attempts"
    assert fault_stack.balance(key) == 5  # refunded


def test_gateway_killed_while_a_client_waits_loses_nothing(fault_stack, slow_image):
    key = fault_stack.new_key(5)
    answers = []
    waiting = threading.Thread(target=lambda: answers.append(_sync_call(fault_stack, key, slow_image)))
    waiting.start()
    job_id = wait_until(lambda: next((k.decode().rsplit(":", 1)[1] for k in fault_stack.redis.scan_iter(
        match=names.job("*"))), None), 60, "the sync job to be accepted", interval_s=0.01)
    fault_stack.kill("gateway")
    waiting.join(timeout=30)
    assert answers and isinstance(answers[0], requests.ConnectionError)  # the client saw the gateway die
    fault_stack.start_gateway()  # on the same port
    final = wait_until(lambda: (j := _status(fault_stack, key, job_id))["status"] == "succeeded" and j, 120, "job")
    assert final["attempts"] == 1 and fault_stack.balance(key) == 4  # the work was done, and paid, once


def _sync_call(stack, key, image):
    try:
        return stack.post("/v1/sam-v2-image", {"image": image, "coordinates": "[3000,2000]"}, key)
    except requests.RequestException as exc:
        return exc
