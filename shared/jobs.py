"""Job records in Redis, their states, and the scripts that move them (and settle credits)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis

from shared import names


class JobStatus(StrEnum):
    """queued -> running -> succeeded | failed | canceled; terminal states never change."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        """True for states that never change again."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)


START = """
-- A worker takes a job: queued|running -> running, counting the attempt.
-- KEYS[1] job hash  KEYS[2] waiting set of its queue
-- ARGV[1] now (ISO)  ARGV[2] max attempts  ARGV[3] job id
-- Returns the attempt number; 0 when the job is missing or terminal;
-- minus the attempt number when it is past max attempts (the caller fails it)
local status = redis.call('HGET', KEYS[1], 'status')
redis.call('ZREM', KEYS[2], ARGV[3])
if not status or status == 'succeeded' or status == 'failed' or status == 'canceled' then return 0 end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempt > tonumber(ARGV[2]) then return -attempt end
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1])
return attempt
"""

CLAIM_UNSENT = """
-- Take jobs that were recorded but never reached the broker (their gateway died in between).
-- KEYS[1] the unsent sorted set
-- ARGV[1] created before this time (epoch s)  ARGV[2] most to take
-- Returns the job ids taken; whoever removes an id is the one who sends it
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do redis.call('ZREM', KEYS[1], id) end
return ids
"""

FINISH = """
-- Move a job to a terminal state and settle its credits, once.
-- KEYS[1] job hash  KEYS[2] hold of the job  KEYS[3] credit balance of its key  KEYS[4] done channel
-- KEYS[5] counters
-- ARGV[1] terminal status  ARGV[2] '1' refund the hold, '0' commit it  ARGV[3..] field, value pairs
-- Returns 1 when the job moved, 0 when it was already terminal or missing (nothing changes)
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'succeeded' or status == 'failed' or status == 'canceled' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
local held = redis.call('GET', KEYS[2])
if held then
  if ARGV[2] == '1' then redis.call('INCRBY', KEYS[3], held) end
  redis.call('DEL', KEYS[2])
end
redis.call('HINCRBY', KEYS[5], 'jobs_' .. ARGV[1], 1)
redis.call('PUBLISH', KEYS[4], ARGV[1])
return 1
"""

# Fields stored as JSON; everything else is a plain string.
_JSON_FIELDS = ("params", "objects", "outputs", "metadata", "timings", "webhook_events")
_INT_FIELDS = ("attempts", "cost", "width", "height", "error_status")


def now_iso() -> str:
    """Current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JobStore:
    """Reads and writes job records; the only code that changes a job's status."""

    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._start = client.register_script(START)
        self._finish = client.register_script(FINISH)
        self._claim = client.register_script(CLAIM_UNSENT)

    def create(self, job_id: str, **fields: Any) -> None:
        """Write a new queued job with its retention TTL."""
        record = {"id": job_id, "status": JobStatus.QUEUED.value, "created_at": now_iso(), "attempts": 0}
        record.update(fields)
        with self.client.pipeline() as pipe:  # MULTI: the record and its unsent mark exist together
            pipe.hset(names.job(job_id), mapping=_encode(record))
            pipe.expire(names.job(job_id), self.ttl_s)
            pipe.zadd(names.UNSENT, {job_id: time.time()})
            pipe.hincrby(names.STATS, "jobs_accepted", 1)
            pipe.execute()

    def mark_sent(self, job_id: str, queue: str) -> None:
        """The broker has the job: it no longer needs rescuing, and now waits in `queue`."""
        with self.client.pipeline() as pipe:
            pipe.zrem(names.UNSENT, job_id)
            pipe.zadd(names.waiting(queue), {job_id: time.time()}, nx=True)
            pipe.execute()

    def peek_waiting(self, queues: tuple[str, ...], limit: int) -> list[str]:
        """Up to `limit` job ids next in line, in the order workers take them (queues in priority order)."""
        ids: list[str] = []
        for queue in queues:
            if len(ids) >= limit:
                break
            ids += [i.decode() for i in self.client.zrange(names.waiting(queue), 0, limit - len(ids) - 1)]
        return ids

    def claim_unsent(self, older_than_s: float, limit: int = 100) -> list[str]:
        """Ids of jobs recorded over `older_than_s` ago and never sent; each id is handed out once."""
        ids = self._claim(keys=[names.UNSENT], args=[time.time() - older_than_s, limit])
        return [i.decode() for i in ids]

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job record, decoded, or None."""
        raw = self.client.hgetall(names.job(job_id))
        return _decode(raw) if raw else None

    def start(self, job_id: str, max_attempts: int, queue: str = names.QUEUE_NORMAL) -> int:
        """Mark running and count the attempt (see START for the return value)."""
        keys = [names.job(job_id), names.waiting(queue)]
        return int(self._start(keys=keys, args=[now_iso(), max_attempts, job_id]))

    def finish(self, job: dict[str, Any], status: JobStatus, **fields: Any) -> bool:
        """Move to a terminal state; succeeded commits the hold, anything else refunds it."""
        assert status.terminal
        fields.setdefault("finished_at", now_iso())
        args: list[Any] = [status.value, "0" if status is JobStatus.SUCCEEDED else "1"]
        for key, value in _encode(fields).items():
            args += [key, value]
        keys = [names.job(job["id"]), names.hold(job["id"]), names.credits(job["key_id"]), names.job_done(job["id"]),
                names.STATS]
        return bool(self._finish(keys=keys, args=args))

    def fail(self, job: dict[str, Any], code: str, message: str, status: int) -> bool:
        """Fail a job with an error and refund it."""
        return self.finish(job, JobStatus.FAILED, error_code=code, error_message=message, error_status=status)


def _encode(record: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in record.items():
        if value is None:
            continue
        out[key] = json.dumps(value) if key in _JSON_FIELDS else str(value)
    return out


def _decode(raw: dict[bytes, bytes]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for k, v in raw.items():
        key, value = k.decode(), v.decode()
        if key in _JSON_FIELDS:
            record[key] = json.loads(value)
        elif key in _INT_FIELDS:
            record[key] = int(value)
        else:
            record[key] = value
    return record


def wait_for_terminal(client: redis.Redis, store: JobStore, job_id: str, timeout_s: float) -> dict[str, Any]:
    """Block until the job is terminal or the timeout passes; returns the latest record."""
    deadline = time.monotonic() + timeout_s
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(names.job_done(job_id))
    try:
        while True:
            # Checked after subscribing, so a completion published before we listened is not missed.
            job = store.get(job_id)
            if job is None or JobStatus(job["status"]).terminal:
                return job
            left = deadline - time.monotonic()
            if left <= 0:
                return job
            pubsub.get_message(timeout=min(left, 1.0))
    finally:
        pubsub.close()
