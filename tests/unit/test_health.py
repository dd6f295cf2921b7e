"""The worker's probe (`python -m worker.health`): alive means heartbeating *and* taking work (celery#10205)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from shared import names, workers
from worker import health
from worker.health import Observation, liveness, readiness

ROOT = Path(__file__).resolve().parents[2]
HOST = "samq-worker@probe-test"
NOW = 1_000_000.0


def obs(beat_age: float | None = 1, busy_for: float | None = None, idle_for: float = 5, waiting: int = 0):
    return Observation(
        now=NOW, heartbeat_at=None if beat_age is None else NOW - beat_age,
        busy_since=None if busy_for is None else NOW - busy_for, idle_since=NOW - idle_for, waiting=waiting,
    )


@pytest.mark.parametrize(
    ("o", "ready", "alive"),
    [
        (obs(), True, True),  # idle, nothing to do
        (obs(beat_age=None), False, False),  # never announced (loading models) or gone
        (obs(beat_age=16), False, False),  # heartbeat older than 3 beats of 5 s
        (obs(idle_for=3600), True, True),  # long idle, but nothing waits: fine
        (obs(idle_for=30, waiting=4), True, True),  # work just arrived: give it time
        (obs(idle_for=121, waiting=1), True, False),  # idle while work waits: not consuming
        (obs(busy_for=500, idle_for=9999, waiting=50), True, True),  # busy within the time limit
        (obs(busy_for=661, waiting=0), True, False),  # one task past time limit + margin: hung
    ],
    ids=["idle", "no-heartbeat", "stale-heartbeat", "long-idle", "fresh-work", "stalled", "busy", "hung"],
)
def test_verdicts(o: Observation, ready: bool, alive: bool) -> None:
    assert readiness(o, heartbeat_s=5).ok is ready
    verdict = liveness(o, heartbeat_s=5, task_time_limit_s=600, stall_s=120)
    assert verdict.ok is alive, verdict.reason


def test_observe_reads_what_the_worker_records(rclient: redis.Redis) -> None:
    assert health.observe(rclient, HOST, list(names.INFER_QUEUES)).heartbeat_at is None
    workers.announce(rclient, HOST)
    health.record_busy(rclient, HOST)
    rclient.rpush(names.QUEUE_LOW, "m1", "m2")
    rclient.rpush(names.QUEUE_HIGH, "m3")
    o = health.observe(rclient, HOST, list(names.INFER_QUEUES))
    assert abs(o.heartbeat_at - time.time()) < 5 and o.busy_since is not None and o.waiting == 3
    health.record_idle(rclient, HOST)
    o = health.observe(rclient, HOST, list(names.INFER_QUEUES))
    assert o.busy_since is None and abs(o.idle_since - time.time()) < 5
    assert 0 < rclient.ttl(names.worker(HOST)) <= health.STATE_TTL_S


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
