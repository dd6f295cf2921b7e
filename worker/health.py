"""Worker self-check for probes: alive only if the worker heartbeats *and* takes work.

    python -m worker.health ready  [--hostname NAME]      # exit 0: models loaded, heartbeating
    python -m worker.health live   [--hostname NAME]      # exit 0: heartbeating and not stuck

A process can be up, heartbeating and still never take another task: a Celery worker that stops consuming after
a Redis reconnect (celery#10205) looks healthy to every process-level check. So liveness also fails when the
worker has been idle for `--stall-s` while messages wait on its queues (a healthy idle worker takes one within a
second), or has been inside one task for longer than the task time limit. Kubernetes restarts it after
`failureThreshold` such answers in a row, which also absorbs the instant between a message arriving and a
healthy worker taking it.

The worker records when it starts and ends each task (`Activity`, fed by Celery's task_prerun/task_postrun
signals in worker/celery_app.py) in one Redis hash per worker: with several slots, `busy_since` is the start of
the oldest task in hand. This module imports no
torch and no model code: the probe starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading
import time
from dataclasses import dataclass

import redis
from redis.typing import EncodableT, FieldT

from shared import names
from shared.redis_client import broker_client
from shared.settings import Settings

STATE_TTL_S = 24 * 3600  # tidy up after a worker that vanished without retiring
DEFAULT_STALL_S = 120.0
TASK_MARGIN_S = 60.0  # beyond the task time limit before a busy worker counts as stuck
DEFAULT_HOSTNAME = f"samq-worker@{socket.gethostname()}"  # the images' `--hostname samq-worker@%h`


def record_busy(client: redis.Redis, hostname: str, since: float | None = None) -> None:
    """The worker has a task in hand, since `since` (default now)."""
    _record(client, hostname, busy_since=since or time.time())


def record_idle(client: redis.Redis, hostname: str) -> None:
    """The worker ends a task (or is ready for its first one)."""
    _record(client, hostname, busy_since="", idle_since=time.time())


class Activity:
    """The tasks one worker has in hand, recorded for the probe as the start of the oldest (thread-safe)."""

    def __init__(self, client: redis.Redis, hostname: str) -> None:
        self.client, self.hostname = client, hostname
        self._running: dict[str, float] = {}
        self._lock = threading.Lock()

    def started(self, task_id: str) -> None:
        """A slot took a task."""
        with self._lock:
            self._running[task_id] = time.time()
            record_busy(self.client, self.hostname, min(self._running.values()))

    def ended(self, task_id: str) -> None:
        """A slot finished a task."""
        with self._lock:
            self._running.pop(task_id, None)
            if self._running:
                record_busy(self.client, self.hostname, min(self._running.values()))
            else:
                record_idle(self.client, self.hostname)


def _record(client: redis.Redis, hostname: str, **fields: float | str) -> None:
    key = names.worker(hostname)
    # Never fail a task over bookkeeping: a missing record reads as "idle for long", judged with the queues.
    with contextlib.suppress(redis.RedisError):
        mapping: dict[FieldT, EncodableT] = {k: v for k, v in fields.items()}  # redis-py's keys are invariant
        pipe = client.pipeline(transaction=False)  # (its commands are typed as the client's, not as returning pipe)
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, STATE_TTL_S)
        pipe.execute()


@dataclass(frozen=True)
class Observation:
    """What the probe read from Redis about one worker, in one round trip."""

    now: float
    heartbeat_at: float | None  # last heartbeat; None if the worker is not announced
    busy_since: float | None  # start of the task in hand; None when idle
    idle_since: float  # end of the last task (0 if unknown)
    waiting: int  # messages on the worker's queues right now


@dataclass(frozen=True)
class ProbeResult:
    """A probe's answer: ok, and why."""

    ok: bool
    reason: str


def observe(client: redis.Redis, hostname: str, queues: list[str]) -> Observation:
    """Read the heartbeat, the activity record and the queue lengths in one pipeline."""
    pipe = client.pipeline(transaction=False)
    pipe.zscore(names.WORKERS, hostname)
    pipe.hmget(names.worker(hostname), "busy_since", "idle_since")
    for queue in queues:
        pipe.llen(queue)
    beat, (busy, idle), *lengths = pipe.execute()
    return Observation(
        now=time.time(),
        heartbeat_at=float(beat) if beat is not None else None,
        busy_since=float(busy) if busy else None,
        idle_since=float(idle) if idle else 0.0,
        waiting=sum(lengths),
    )


def readiness(obs: Observation, heartbeat_s: float) -> ProbeResult:
    """Ready: the worker heartbeats, which it starts doing only once its models are loaded."""
    if obs.heartbeat_at is None:
        return ProbeResult(False, "no heartbeat yet (loading models, or not started)")
    age = obs.now - obs.heartbeat_at
    if age > 3 * heartbeat_s:
        return ProbeResult(False, f"last heartbeat {age:.0f}s ago")
    return ProbeResult(True, f"heartbeat {age:.0f}s ago")


def liveness(obs: Observation, heartbeat_s: float, task_time_limit_s: float, stall_s: float) -> ProbeResult:
    """Alive: heartbeating, and either busy within the task time limit or not idle while work waits."""
    beat = readiness(obs, heartbeat_s)
    if not beat.ok:
        return beat
    if obs.busy_since is not None:
        busy = obs.now - obs.busy_since
        if busy > task_time_limit_s + TASK_MARGIN_S:
            return ProbeResult(False, f"in one task for {busy:.0f}s, past the {task_time_limit_s:.0f}s time limit")
        return ProbeResult(True, f"busy for {busy:.0f}s")
    idle = obs.now - obs.idle_since
    if obs.waiting and idle > stall_s:
        return ProbeResult(False, f"idle for {idle:.0f}s while {obs.waiting} messages wait: not consuming")
    return ProbeResult(True, f"idle for {idle:.0f}s, {obs.waiting} messages waiting")


def probe(settings: Settings, mode: str, hostname: str, queues: list[str], stall_s: float) -> ProbeResult:
    """Run one check against Redis. Liveness passes when Redis itself is unreachable: a restart cannot fix that."""
    client = broker_client(settings, socket_connect_timeout=3, socket_timeout=3)
    try:
        obs = observe(client, hostname, queues)
    except redis.RedisError as exc:
        return ProbeResult(mode == "live",
                           f"Redis unreachable ({exc.__class__.__name__}); the worker reconnects itself")
    finally:
        client.close()
    if mode == "ready":
        return readiness(obs, settings.worker_heartbeat_s)
    return liveness(obs, settings.worker_heartbeat_s, settings.task_time_limit_s, stall_s)


def main(argv: list[str] | None = None) -> int:
    """Entry point for `python -m worker.health`; exit status 0 means healthy."""
    parser = argparse.ArgumentParser(prog="python -m worker.health", description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["live", "ready"])
    parser.add_argument("--hostname", default=DEFAULT_HOSTNAME, help="the worker's Celery hostname")
    parser.add_argument("--queues", default=",".join(names.INFER_QUEUES), help="comma-separated queues it consumes")
    parser.add_argument("--stall-s", type=float, default=DEFAULT_STALL_S, help="idle this long with work waiting")
    args = parser.parse_args(argv)
    verdict = probe(Settings(), args.mode, args.hostname, args.queues.split(","), args.stall_s)
    print(f"{args.mode}: {'ok' if verdict.ok else 'FAIL'}: {args.hostname}: {verdict.reason}", flush=True)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
