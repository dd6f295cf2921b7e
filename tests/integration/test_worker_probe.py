"""The worker probe against a real Celery worker: a worker that stops consuming while it still heartbeats (the
shape of celery#10205) fails liveness; the same worker consuming again passes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from shared import names, workers
from shared.celery_apps import make_celery
from tests.helpers import ROCKET_JPG, b64, wait_until


def probe(stack, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **stack.env}
    return subprocess.run([sys.executable, "-m", "worker.health", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def finished(stack, key: str, job_id: str) -> dict:
    def done():
        job = stack.get(f"/v1/jobs/{job_id}", key).json()
        return job if job["status"] in ("succeeded", "failed", "canceled") else None

    return wait_until(done, 120, f"job {job_id}", interval_s=0.1)


def test_probe_catches_a_worker_that_stopped_consuming(stack, key):
    client = stack.redis
    host = next(h for h in workers.alive(client, 60) if h.startswith("w1@"))
    job = stack.post("/v1/jobs", {"image": b64(ROCKET_JPG), "prompt": "rocket"}, key).json()
    assert finished(stack, key, job["id"])["status"] == "succeeded"
    record = client.hgetall(names.worker(host))
    assert record[b"busy_since"] == b"" and float(record[b"idle_since"]) > time.time() - 120
    for mode in ("ready", "live"):
        result = probe(stack, mode, "--hostname", host)
        assert result.returncode == 0, result.stdout + result.stderr

    control = make_celery(stack.settings).control
    try:
        for queue in names.INFER_QUEUES:  # the process and its heartbeat go on; consumption stops
            control.cancel_consumer(queue, destination=[host], reply=True, timeout=10)
        job = stack.post("/v1/jobs", {"image": b64(ROCKET_JPG), "prompt": "rocket"}, key).json()
        wait_until(lambda: client.llen(names.QUEUE_NORMAL) == 1, 10, "the job waiting on its queue")
        time.sleep(2.5)
        result = probe(stack, "live", "--hostname", host, "--stall-s", "2")
        assert result.returncode == 1 and "not consuming" in result.stdout, result.stdout + result.stderr
        assert probe(stack, "ready", "--hostname", host).returncode == 0, "still heartbeating: only liveness fails"
    finally:
        for queue in names.INFER_QUEUES:
            control.add_consumer(queue, destination=[host], reply=True, timeout=10)
    assert finished(stack, key, job["id"])["status"] == "succeeded"
    result = probe(stack, "live", "--hostname", host, "--stall-s", "2")
    assert result.returncode == 0, result.stdout + result.stderr
