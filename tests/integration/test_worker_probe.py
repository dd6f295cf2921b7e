"""The worker probe (`python -m worker.health`, a process of its own) against a real Celery worker: a worker that
stops consuming while it still heartbeats (the shape of celery#10205) fails liveness; the same worker consuming
again passes. And its exit codes against worker records written straight into the test Redis, with Redis down, and
without importing torch."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import redis

from harness.photos import ROCKET_JPG, b64
from harness.procs import wait_until
from shared import names, workers
from shared.celery_apps import make_celery
from tests.helpers import wait_for_job
from worker import health

ROOT = Path(__file__).resolve().parents[2]
HOST = "samq-worker@probe-test"


def probe(stack, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **stack.env}
    return subprocess.run([sys.executable, "-m", "worker.health", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_probe_catches_a_worker_that_stopped_consuming(stack, key):
    client = stack.redis
    host = next(h for h in workers.alive(client, 60) if h.startswith("w1@"))
    job = stack.post("/v1/jobs", {"image": b64(ROCKET_JPG), "prompt": "rocket"}, key).json()
    assert wait_for_job(stack, key, job["id"])["status"] == "succeeded"
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
    assert wait_for_job(stack, key, job["id"])["status"] == "succeeded"
    result = probe(stack, "live", "--hostname", host, "--stall-s", "2")
    assert result.returncode == 0, result.stdout + result.stderr


def run_probe(redis_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAMQ_")}
    env.update(SAMQ_REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
    # -X importtime lists every module imported: the probe must stay light and never pull in torch.
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "worker.health", *args], env=env,
                          capture_output=True, text=True, timeout=60)
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "import time:" in line}
    assert "shared.settings" in imported and not {"torch", "worker.runtime", "celery"} & imported
    return proc


def test_cli_exit_codes_and_no_torch(rclient: redis.Redis, redis_url: str) -> None:
    proc = run_probe(redis_url, "ready", "--hostname", HOST)
    assert proc.returncode == 1 and "no heartbeat" in proc.stdout, proc.stdout + proc.stderr
    workers.announce(rclient, HOST)
    health.record_idle(rclient, HOST)
    rclient.hset(names.worker(HOST), "idle_since", time.time() - 600)  # idle for 10 minutes...
    assert run_probe(redis_url, "live", "--hostname", HOST).returncode == 0
    rclient.rpush(names.QUEUE_NORMAL, "msg")  # ...and now with a message it is not taking
    proc = run_probe(redis_url, "live", "--hostname", HOST, "--stall-s", "60")
    assert proc.returncode == 1 and "not consuming" in proc.stdout, proc.stdout + proc.stderr
    assert run_probe(redis_url, "ready", "--hostname", HOST).returncode == 0


def test_redis_down_fails_readiness_not_liveness() -> None:
    url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    assert run_probe(url, "live", "--hostname", HOST).returncode == 0
    proc = run_probe(url, "ready", "--hostname", HOST)
    assert proc.returncode == 1 and "Redis unreachable" in proc.stdout
