"""The worker's probe (`python -m worker.health`): alive means heartbeating *and* taking work (celery#10205). The
verdicts and what they read from Redis, in process; the command line itself runs in
tests/integration/test_worker_probe.py."""

from __future__ import annotations

import time

import pytest
import redis

from shared import names, workers
from worker import health
from worker.health import Observation, liveness, readiness

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
