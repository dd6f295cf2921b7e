"""Job records in Redis, their states, and the scripts that move them (and settle credits).

Every change of a job's state is one Lua script, so credits, batch counters, the waiting sets and
webhook events (the outbox) always move together with it:
ACCEPT (N new jobs), START (a worker takes one, under a lease), FINISH (terminal, or a cancel request),
RENEW (a worker's heartbeat keeps its leases), CLAIM_LAPSED (a dead worker's jobs go back to their queue), CLAIM_DUE.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

import redis

from shared import names
from shared.errors import (
    IdempotencyMismatch,
    InsufficientCredits,
    NoCapacity,
    NotReplicated,
    QueueFull,
    TooManyJobs,
    Unauthorized,
)
from shared.records import TERMINAL, JobRecord, JobStatus, Success, dump_json, encode_fields, now_iso
from shared.redis_client import run_replicated

log = logging.getLogger(__name__)


class Verdict(StrEnum):
    """What a worker does with a job it received (START's answer)."""

    RUN = "run"
    SKIP = "skip"  # missing, already ended, or running under another live lease (a stale broker message)
    CANCEL = "cancel"  # a cancel was asked while it was running before, or its key was disabled
    EXHAUSTED = "exhausted"  # past max attempts: it fails


@dataclass(frozen=True)
class Start:
    """START's answer: the verdict, the attempt number it counted, and (for RUN) the run it began: the token
    the worker's renewals and its FINISH carry (a claim moves the record on, so a run claimed away is refused)."""

    verdict: Verdict
    attempt: int
    run: int = field(default=0, compare=False)


class Finish:
    """FINISH's answer codes."""

    MOVED = 1  # moved to the status asked
    CANCELED = 2  # moved to canceled instead (a cancel was asked)
    REQUESTED = 3  # cancel requested (it is running)
    ENDED = 0  # already terminal (this run's own FINISH sent again, or a cancel that came too late) or missing
    LOST = -1  # the run named is no longer the job's: its lease lapsed and the job was claimed; nothing changes


class Cancel(StrEnum):
    """What a cancel request did."""

    CANCELED = "canceled"  # it was queued: canceled and refunded now
    REQUESTED = "requested"  # it is running: its worker cancels it at the next check
    TERMINAL = "terminal"  # too late: it already ended
    MISSING = "missing"


# The statuses and the webhook filter START and FINISH read; spelt once, from JobStatus.
_LUA_COMMON = """
local TERMINAL = {TERMINAL_STATUSES}
-- Whether a job's webhook_events (JSON list, as stored) asks for `name`.
local function wants(events, name)
  for _, e in ipairs(cjson.decode(events)) do if e == name then return true end end
  return false
end
""".replace("TERMINAL_STATUSES", ", ".join(f"{s.value} = true" for s in sorted(TERMINAL)))

ACCEPT = """
-- Accept N jobs in one step, all or nothing: the key is live, the credits are reserved, the records,
-- waiting and rescue entries, batch and idempotency records are written together.
-- KEYS[1] key hash  KEYS[2] credit balance  KEYS[3] idempotency record  KEYS[4] stats  KEYS[5] unsent set
-- KEYS[6] workers set  KEYS[7] active count of the key  KEYS[8] batch hash  KEYS[9] batch job list
-- KEYS[10..12] waiting sets (high, normal, low)  KEYS[13..] per job: job hash, hold, params (3 keys each)
-- ARGV[1] one JSON object:
--   now (epoch s), cost (per job), jobs: per job {fields = its hash fields, params = its params (JSON text: a
--   string of their own keeps the hash small enough for Redis's compact encoding), waiting = 1..3 (its set)},
--   optional: idempotency {fingerprint, ttl (s), status, body: the answer to store}; workers_since (epoch s: a
--   worker must have been heard since); max_queued (most jobs queued in all); max_active (most unfinished jobs
--   of this key); batch (the batch hash's fields)
-- Returns {code, n}: 1 accepted (n = balance); 2 replay (n = status, 3rd = body); 3 idempotency key reused
-- with another body; 0 not enough credits (n = balance); -1 unknown key; -2 disabled key; -3 no worker;
-- -4 queue full (n = queued); -5 too many unfinished jobs of this key (n = unfinished)
local a = cjson.decode(ARGV[1])
local idem = a.idempotency
if idem then
  local seen = redis.call('HMGET', KEYS[3], 'fingerprint', 'status', 'body')
  if seen[1] then
    if seen[1] ~= idem.fingerprint then return {3, 0} end
    return {2, tonumber(seen[2]), seen[3]}
  end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
if redis.call('HGET', KEYS[1], 'disabled') == '1' then return {-2, 0} end
local n = #a.jobs
local cost = a.cost * n
local balance = tonumber(redis.call('GET', KEYS[2]) or '0')
if balance < cost then return {0, balance} end
if a.workers_since and redis.call('ZCOUNT', KEYS[6], a.workers_since, '+inf') == 0 then return {-3, 0} end
if a.max_queued then
  local queued = redis.call('ZCARD', KEYS[10]) + redis.call('ZCARD', KEYS[11]) + redis.call('ZCARD', KEYS[12])
  if queued + n > a.max_queued then return {-4, queued} end
end
local active = tonumber(redis.call('GET', KEYS[7]) or '0')
if a.max_active and active + n > a.max_active then return {-5, active} end
balance = redis.call('DECRBY', KEYS[2], cost)
redis.call('INCRBY', KEYS[7], n)
for i, spec in ipairs(a.jobs) do
  local job, hold, id = KEYS[10 + 3 * i], KEYS[11 + 3 * i], spec.fields['id']
  for k, v in pairs(spec.fields) do redis.call('HSET', job, k, v) end
  redis.call('SET', KEYS[12 + 3 * i], spec.params)
  redis.call('SET', hold, a.cost)  -- no TTL: deleted when the job is settled, however long that takes
  redis.call('ZADD', KEYS[9 + spec.waiting], a.now + i * 1e-6, id)  -- before the publish, so START always finds it
  redis.call('ZADD', KEYS[5], a.now, id)
  if a.batch then redis.call('RPUSH', KEYS[9], id) end
end
if a.batch then
  for k, v in pairs(a.batch) do redis.call('HSET', KEYS[8], k, v) end
  redis.call('HSET', KEYS[8], 'total', n, 'queued', n, 'running', 0, 'succeeded', 0, 'failed', 0, 'canceled', 0)
end
if idem then
  redis.call('HSET', KEYS[3], 'fingerprint', idem.fingerprint, 'status', idem.status, 'body', idem.body)
  redis.call('EXPIRE', KEYS[3], idem.ttl)
end
redis.call('HINCRBY', KEYS[4], 'jobs_accepted', n)
redis.call('HINCRBY', KEYS[4], 'credits_reserved', cost)
return {1, balance}
"""

START = _LUA_COMMON + """
-- A worker takes a job: queued|running -> running, counting the attempt, under a lease this worker holds.
-- KEYS[1] job hash  KEYS[2] waiting set of its queue  KEYS[3] batch hash  KEYS[4] outbox  KEYS[5] key hash
-- KEYS[6] leases
-- ARGV[1] one JSON object: id (the job's), now (epoch s), now_iso, max_attempts, event (the job.started event's
--   id), worker (its Celery hostname), lease_until (epoch s); optional: retry_of (the run a retry message
--   continues: it may start while that run's lease lasts)
-- Returns {verdict, attempt, event, run}: verdict 'run' (run = the new run, the token of its lease); 'skip'
-- (missing, terminal, or running under a live lease of another run: a stale broker message, restored after
-- the visibility timeout or replaced by a claim); 'cancel' (a cancel was asked, or the key was disabled: the
-- caller cancels it); 'exhausted' (past max attempts: the caller fails it).
-- event is the job.started webhook event written to the outbox (first attempt only), or ''
local a = cjson.decode(ARGV[1])
redis.call('ZREM', KEYS[2], a.id)
local job = redis.call('HMGET', KEYS[1], 'status', 'cancel_requested', 'batch_id', 'webhook_url', 'webhook_events',
                       'key_id', 'attempts', 'run')
local status = job[1]
if not status or TERMINAL[status] then return {'skip', 0, '', 0} end
if status == 'running' and tostring(a.retry_of) ~= job[8] then
  local lease = redis.call('ZSCORE', KEYS[6], a.id)
  if lease and tonumber(lease) > a.now then return {'skip', 0, '', 0} end  -- someone runs it now
end
if job[2] == '1' or redis.call('HGET', KEYS[5], 'disabled') == '1' then return {'cancel', 0, '', 0} end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempt > a.max_attempts then return {'exhausted', attempt, '', 0} end
local run = redis.call('HINCRBY', KEYS[1], 'run', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', a.now_iso, 'worker', a.worker)
redis.call('ZADD', KEYS[6], a.lease_until, a.id)
local event = ''
if status == 'queued' then
  if job[3] then redis.call('HINCRBY', KEYS[3], 'queued', -1); redis.call('HINCRBY', KEYS[3], 'running', 1) end
  if attempt == 1 and job[4] and job[5] and wants(job[5], 'started') then
    event = cjson.encode({id = a.event, type = 'job.started', job_id = a.id, key_id = job[6], url = job[4],
                          at = a.now})
    redis.call('ZADD', KEYS[4], a.now, event)
  end
end
return {'run', attempt, event, run}
"""

FINISH = _LUA_COMMON + """
-- Move a job to a terminal state and settle its credits, once; or ask a running job to cancel.
-- KEYS[1] job hash  KEYS[2] hold  KEYS[3] credit balance of its key  KEYS[4] done channel  KEYS[5] stats
-- KEYS[6] active count of the key  KEYS[7] batch hash  KEYS[8] batch job list  KEYS[9] outbox
-- KEYS[10] expiring set  KEYS[11] waiting set of its queue  KEYS[12] params of the job
-- KEYS[13] webhook delivery log of the job  KEYS[14] leases
-- ARGV[1] one JSON object: id (the job's), target (a terminal status, or 'cancel': queued -> canceled;
--   running -> cancel requested), now (epoch s), finished_at (ISO), retention (s), job_event and batch_event
--   (the ids of the events it may write), fields (hash fields to store with the terminal status asked);
--   optional: run (the run that ends it; absent = whoever runs it: the gateway's cancel, a job no run holds)
-- Success after a cancel request turns into canceled (and the fields are not stored).
-- Returns {code, job event, batch event}: code 1 moved (to target), 2 moved to canceled instead,
-- 3 cancel requested (it is running), 0 already terminal or missing (nothing changes), -1 the run named is no
-- longer the job's (its lease lapsed and the job was claimed: nothing changes, its result is not the job's)
local a = cjson.decode(ARGV[1])
local job = redis.call('HMGET', KEYS[1], 'status', 'cancel_requested', 'batch_id', 'webhook_url', 'webhook_events',
                       'key_id', 'run')
local status = job[1]
if not status then return {0, '', ''} end
if a.run and tostring(a.run) ~= job[7] then return {-1, '', ''} end
if TERMINAL[status] then return {0, '', ''} end
local target, code = a.target, 1
if target == 'cancel' then
  if status == 'running' then
    redis.call('HSET', KEYS[1], 'cancel_requested', '1')
    return {3, '', ''}
  end
  target, code = 'canceled', 2
elseif target == 'succeeded' and job[2] == '1' then
  target, code = 'canceled', 2
end
redis.call('HSET', KEYS[1], 'status', target, 'finished_at', a.finished_at)
if code == 1 then
  for k, v in pairs(a.fields) do redis.call('HSET', KEYS[1], k, v) end
end
local held = redis.call('GET', KEYS[2])
if held then
  if target == 'succeeded' then
    redis.call('HINCRBY', KEYS[5], 'credits_committed', held)
  else
    redis.call('INCRBY', KEYS[3], held)
    redis.call('HINCRBY', KEYS[5], 'credits_refunded', held)
  end
  redis.call('DEL', KEYS[2])
end
redis.call('DECR', KEYS[6])
redis.call('ZREM', KEYS[11], a.id)
redis.call('ZREM', KEYS[14], a.id)
redis.call('HINCRBY', KEYS[5], 'jobs_' .. target, 1)
redis.call('EXPIRE', KEYS[1], a.retention)
redis.call('EXPIRE', KEYS[12], a.retention)
redis.call('EXPIRE', KEYS[13], a.retention)  -- the delivery log goes with its job
redis.call('ZADD', KEYS[10], a.now + a.retention, a.id)
local job_event, batch_event = '', ''
if job[4] and (not job[5] or wants(job[5], 'completed')) then
  job_event = cjson.encode({id = a.job_event, type = 'job.' .. target, job_id = a.id, key_id = job[6], url = job[4],
                            at = a.now})
  redis.call('ZADD', KEYS[9], a.now, job_event)
end
if job[3] then
  redis.call('HINCRBY', KEYS[7], status, -1)
  redis.call('HINCRBY', KEYS[7], target, 1)
  local c = redis.call('HMGET', KEYS[7], 'total', 'succeeded', 'failed', 'canceled', 'webhook_url')
  if tonumber(c[2]) + tonumber(c[3]) + tonumber(c[4]) == tonumber(c[1]) then
    -- Only the step that ends the last job gets here: batch.completed is written exactly once.
    redis.call('HSET', KEYS[7], 'finished_at', a.finished_at)
    redis.call('EXPIRE', KEYS[7], a.retention)
    redis.call('EXPIRE', KEYS[8], a.retention)
    if c[5] then
      batch_event = cjson.encode({id = a.batch_event, type = 'batch.completed', batch_id = job[3], key_id = job[6],
                                  url = c[5], at = a.now})
      redis.call('ZADD', KEYS[9], a.now, batch_event)
    end
  end
end
redis.call('PUBLISH', KEYS[4], target)
return {code, job_event, batch_event}
"""

RENEW = """
-- A worker's heartbeat: the jobs it still runs keep their leases (never a lease of another run of the job).
-- KEYS[1] leases  KEYS[2..] the job hash of each job it holds
-- ARGV[1] lease end (epoch s)  ARGV[2..] per job (in the order of KEYS[2..]): its id, the run it holds
-- A lease is moved later only (a longer one set for a retry stays); a lapsed one nobody has claimed yet is
-- renewed too: its worker was slow, not dead.
-- Returns the ids this worker no longer holds (claimed by another worker, or ended)
local lost = {}
for i = 2, #KEYS do
  local id, run = ARGV[2 * i - 2], ARGV[2 * i - 1]
  if redis.call('HGET', KEYS[i], 'run') == run and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], 'GT', ARGV[1], id)
  else
    table.insert(lost, id)
  end
end
return lost
"""

CLAIM_LAPSED = """
-- Take back running jobs whose lease lapsed (their worker died, or stopped renewing): each goes back to queued
-- on its own queue, once, for the caller to send to the broker again; its attempt is counted by the next START.
-- KEYS[1] leases  KEYS[2] unsent set  KEYS[3..] per job: job hash, waiting set of its queue, batch hash (3 each)
-- ARGV[1] now (epoch s)  ARGV[2..] the job ids (in the order of KEYS[3..])
-- A job renewed or ended since the caller read the leases is left alone. The claim moves the run on, so the old
-- run's renewals and FINISH are refused; the id goes to the unsent set too, so if the caller dies before it
-- publishes, any heartbeat's resend sends it (the caller removes it once sent).
-- Returns the ids claimed
local now, claimed = tonumber(ARGV[1]), {}
for i = 2, #ARGV do
  local id, job, waiting, batch = ARGV[i], KEYS[3 * i - 3], KEYS[3 * i - 2], KEYS[3 * i - 1]
  local lease = redis.call('ZSCORE', KEYS[1], id)
  if lease and tonumber(lease) <= now then
    redis.call('ZREM', KEYS[1], id)
    local record = redis.call('HMGET', job, 'status', 'batch_id')
    if record[1] == 'running' then
      redis.call('HINCRBY', job, 'run', 1)
      redis.call('HSET', job, 'status', 'queued')
      redis.call('ZADD', waiting, now, id)
      redis.call('ZADD', KEYS[2], now, id)
      if record[2] then redis.call('HINCRBY', batch, 'running', -1); redis.call('HINCRBY', batch, 'queued', 1) end
      table.insert(claimed, id)
    end
  end
end
return claimed
"""

CLAIM_DUE = """
-- Take the members of a time-scored set that are due: jobs recorded but never sent to the broker (their
-- gateway died in between), or jobs whose retention ended (their stored objects are deleted).
-- KEYS[1] the sorted set
-- ARGV[1] scored at or before this time (epoch s)  ARGV[2] most to take
-- Returns the ids taken; whoever removes an id is the one who handles it
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do redis.call('ZREM', KEYS[1], id) end
return ids
"""

_QUEUE_INDEX = {queue: i for i, queue in enumerate(names.INFER_QUEUES, start=1)}
IDEMPOTENCY_TTL_S = 24 * 3600
RETRY_AFTER_S = 5  # Retry-After of ACCEPT's capacity refusals


def new_id() -> str:
    """An unguessable id (128 random bits) that starts with its creation time (ms, hex): age is readable."""
    return f"{int(time.time() * 1000):011x}{secrets.token_hex(16)}"


def id_age_s(any_id: str) -> float | None:
    """Seconds since an id from new_id() was made; None for ids of another shape."""
    if len(any_id) != 43:
        return None
    try:
        return time.time() - int(any_id[:11], 16) / 1000
    except ValueError:
        return None


def event_id() -> str:
    """A webhook event id (the same on every retry of that event)."""
    return f"msg_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Idempotency:
    """An Idempotency-Key, the request's fingerprint, and the answer to store if this request is the first."""

    key: str
    fingerprint: str
    status: int
    body: str


@dataclass(frozen=True)
class Accepted:
    """The outcome of ACCEPT: the balance after reserving, or the first answer to replay."""

    balance: int | None = None
    replay: tuple[int, str] | None = None


@dataclass(frozen=True)
class Limits:
    """Capacity rules checked inside ACCEPT, after the key and credits."""

    workers_since: float | None = None  # a worker must have been heard since then (None: no check)
    max_queued: int = 0
    max_active_per_key: int = 0


class JobStore:
    """Reads and writes job records; the only code that changes a job's status."""

    def __init__(self, client: redis.Redis, retention_s: int,
                 on_events: Callable[[list[str]], None] | None = None, lease_s: float = 15.0,
                 min_replicas: int = 0, wait_timeout_ms: int = 1000) -> None:
        self.client = client
        # ACCEPT and FINISH return once this many replicas have them (SAMQ_REDIS_MIN_REPLICAS; docs/DEPLOY.md).
        self.min_replicas, self.wait_timeout_ms = min_replicas, wait_timeout_ms
        self.retention_s = retention_s
        self.lease_s = lease_s  # how long a START's lease lasts unless its worker's heartbeat renews it
        self.on_events = on_events or (lambda events: None)  # hands outbox events to the webhook queue
        self._accept = client.register_script(ACCEPT)
        self._start = client.register_script(START)
        self._finish = client.register_script(FINISH)
        self._renew = client.register_script(RENEW)
        self._claim_lapsed = client.register_script(CLAIM_LAPSED)
        self._claim = client.register_script(CLAIM_DUE)

    def accept(self, jobs: list[JobRecord], idem: Idempotency | None = None, batch: dict[str, Any] | None = None,
               limits: Limits | None = None) -> Accepted:
        """Reserve credits and record `jobs` (all of one key) in one step; raises, changing nothing."""
        limits = limits or Limits()
        first = jobs[0]
        keys = [names.api_key(first.key_id), names.credits(first.key_id),
                names.idempotency(first.key_id, idem.key if idem else ""),
                names.STATS, names.UNSENT, names.WORKERS, names.active(first.key_id),
                names.batch(first.batch_id or ""), names.batch_jobs(first.batch_id or ""),
                *(names.waiting(q) for q in names.INFER_QUEUES)]
        arg: dict[str, Any] = {"now": time.time(), "cost": first.cost, "jobs": []}
        if idem:
            arg["idempotency"] = {"fingerprint": idem.fingerprint, "ttl": IDEMPOTENCY_TTL_S, "status": idem.status,
                                  "body": idem.body}
        if limits.workers_since is not None:
            arg["workers_since"] = limits.workers_since
        if limits.max_queued:
            arg["max_queued"] = limits.max_queued
        if limits.max_active_per_key:
            arg["max_active"] = limits.max_active_per_key
        if batch:
            arg["batch"] = encode_fields(batch)
        for job in jobs:
            keys += [names.job(job.id), names.hold(job.id), names.params(job.id)]
            arg["jobs"].append({"fields": job.to_redis(), "params": job.params.to_json(),
                                "waiting": _QUEUE_INDEX[job.queue]})
        try:
            code, value, *rest = run_replicated(self.client, self._accept, keys, [dump_json(arg)], self.min_replicas,
                                                self.wait_timeout_ms)
        except NotReplicated as exc:
            if exc.result[0] in (1, 2):  # jobs recorded, or an earlier answer replayed: the caller answers 503
                raise
            code, value, *rest = exc.result  # a refusal wrote nothing: answered as it is
        if code == 1:
            return Accepted(balance=int(value))
        if code == 2:
            return Accepted(replay=(int(value), rest[0].decode()))
        raise {
            3: lambda: IdempotencyMismatch("this Idempotency-Key was used with a different request body"),
            0: lambda: InsufficientCredits(
                f"this call costs {first.cost * len(jobs)} credits; the key has {value}; nothing was charged"),
            -1: lambda: Unauthorized("unknown API key"),
            -2: lambda: Unauthorized("this API key is disabled"),
            -3: lambda: NoCapacity("no worker is running; nothing was charged", RETRY_AFTER_S),
            -4: lambda: QueueFull(f"the queue is full ({value} jobs waiting); nothing was charged", RETRY_AFTER_S),
            -5: lambda: TooManyJobs(f"this key has {value} unfinished jobs, the most allowed is "
                                    f"{limits.max_active_per_key}; nothing was charged", RETRY_AFTER_S),
        }[code]()

    def sent(self, job_ids: list[str]) -> None:
        """The broker has these jobs: they no longer need rescuing."""
        self.client.zrem(names.UNSENT, *job_ids)

    def forget_answer(self, key_id: str, idem_key: str) -> None:
        """Drop a stored idempotent answer (its request could not be completed, so a retry must run anew)."""
        self.client.delete(names.idempotency(key_id, idem_key))

    def peek_waiting(self, queues: tuple[str, ...], limit: int) -> list[str]:
        """Up to `limit` job ids next in line, in the order workers take them (queues in priority order)."""
        ids: list[str] = []
        for queue in queues:
            if len(ids) >= limit:
                break
            # cast: redis-py types replies as bytes | str (it cannot tell decode_responses); samq's clients read bytes
            waiting = cast(list[bytes], self.client.zrange(names.waiting(queue), 0, limit - len(ids) - 1))
            ids += [i.decode() for i in waiting]
        return ids

    def claim_unsent(self, older_than_s: float, limit: int = 100) -> list[str]:
        """Ids of jobs recorded over `older_than_s` ago and never sent; each id is handed out once."""
        ids = self._claim(keys=[names.UNSENT], args=[time.time() - older_than_s, limit])
        return [i.decode() for i in ids]

    def claim_expired(self, limit: int = 100) -> list[str]:
        """Ids of jobs whose retention has ended (their records are gone); each id is handed out once."""
        return [i.decode() for i in self._claim(keys=[names.EXPIRING], args=[time.time(), limit])]

    def get(self, job_id: str) -> JobRecord | None:
        """The job record, or None."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(names.job(job_id))  # (redis-py types a pipeline's commands as the client's: no chaining)
            pipe.get(names.params(job_id))
            raw, params = pipe.execute()
        return JobRecord.from_redis(raw, params) if raw else None

    def statuses(self, job_ids: list[str]) -> list[str | None]:
        """The status of each job (None for expired ones), in one round trip."""
        with self.client.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(names.job(job_id), "status")
            return [s.decode() if s else None for s in pipe.execute()]

    def runs(self, job_id: str, run: int) -> bool:
        """Whether `run` is still the job's current run (no claim has taken the job away from it)."""
        return self.client.hget(names.job(job_id), "run") == str(run).encode()

    def cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked to cancel this (running) job."""
        return self.client.hget(names.job(job_id), "cancel_requested") == b"1"

    def start(self, job: JobRecord, max_attempts: int, worker: str = "", retry_of: int | None = None) -> Start:
        """Mark running under a lease of `worker` and count the attempt, or say why not (see START); publishes
        job.started. `retry_of`: the run a retry message continues (it may start while that run's lease lasts)."""
        keys = [names.job(job.id), names.waiting(job.queue), names.batch(job.batch_id or ""), names.OUTBOX,
                names.api_key(job.key_id), names.LEASES]
        now = time.time()
        arg: dict[str, Any] = {"id": job.id, "now": now, "now_iso": now_iso(), "max_attempts": max_attempts,
                               "event": event_id(), "worker": worker, "lease_until": now + self.lease_s}
        if retry_of is not None:
            arg["retry_of"] = retry_of
        verdict, attempt, event, run = self._start(keys=keys, args=[dump_json(arg)])
        if event:
            self.on_events([event.decode()])
        return Start(Verdict(verdict.decode()), int(attempt), int(run))

    def renew(self, held: dict[str, int], lease_s: float | None = None) -> list[str]:
        """Move on the leases of the runs in `held` (job id -> run) in one step; returns the ids no longer held."""
        if not held:
            return []
        ids = list(held)
        args: list[Any] = [time.time() + (self.lease_s if lease_s is None else lease_s)]
        for job_id in ids:
            args += [job_id, held[job_id]]
        lost = self._renew(keys=[names.LEASES, *(names.job(i) for i in ids)], args=args)
        return [i.decode() for i in lost]

    def claim_lapsed(self, limit: int = 100) -> list[tuple[str, str]]:
        """Take back running jobs whose lease lapsed, each once: they are queued again; returns (id, queue) pairs
        for the caller to send to the broker (then `sent`)."""
        now = time.time()
        lapsed = cast(list[bytes], self.client.zrangebyscore(names.LEASES, "-inf", now, start=0, num=limit))  # bytes
        ids = [i.decode() for i in lapsed]
        if not ids:
            return []
        with self.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(names.job(job_id), "queue", "batch_id")
            found = pipe.execute()
        keys = [names.LEASES, names.UNSENT]
        queues = {}
        for job_id, (queue, batch_id) in zip(ids, found, strict=True):
            queues[job_id] = queue.decode() if queue else names.QUEUE_NORMAL
            batch = names.batch(batch_id.decode() if batch_id else "")
            keys += [names.job(job_id), names.waiting(queues[job_id]), batch]
        claimed = self._claim_lapsed(keys=keys, args=[now, *ids])
        return [(i.decode(), queues[i.decode()]) for i in claimed]

    def _move(self, job: JobRecord, target: str, fields: dict[str, Any], run: int | None = None) -> int:
        now = time.time()
        arg: dict[str, Any] = {"id": job.id, "target": target, "now": now, "finished_at": now_iso(),
                               "retention": self.retention_s, "job_event": event_id(), "batch_event": event_id(),
                               "fields": encode_fields(fields)}
        if run is not None:
            arg["run"] = run
        batch_id = job.batch_id or ""
        keys = [names.job(job.id), names.hold(job.id), names.credits(job.key_id), names.job_done(job.id),
                names.STATS, names.active(job.key_id), names.batch(batch_id), names.batch_jobs(batch_id),
                names.OUTBOX, names.EXPIRING, names.waiting(job.queue), names.params(job.id),
                names.deliveries(job.id), names.LEASES]
        try:
            code, *events = run_replicated(self.client, self._finish, keys, [dump_json(arg)], self.min_replicas,
                                           self.wait_timeout_ms)
        except NotReplicated as exc:
            if target == "cancel":
                raise  # a lost cancel would let a queued job run and be charged: the gateway answers 503
            # Settled on the primary alone: if a failover loses it, the job is running there under a lease nobody
            # renews, and runs again (docs/DEPLOY.md, "Redis Sentinel"). Its events wait in the outbox for the
            # sweep meanwhile, so no receiver hears of an end that may be undone.
            log.warning("FINISH of job %s confirmed by %d of %d replicas in %d ms", job.id, exc.acked,
                        self.min_replicas, self.wait_timeout_ms)
            code, events = exc.result[0], []
        events = [e.decode() for e in events if e]
        if events:
            self.on_events(events)
        return int(code)

    def finish(self, job: JobRecord, status: JobStatus, run: int | None = None, success: Success | None = None) -> bool:
        """Move to a terminal state; succeeded commits the hold (storing `success`), anything else refunds it.

        False when the job was already terminal, or was canceled meanwhile (then it ends canceled, refunded), or
        `run` (the run ending it) is no longer the job's (see `end`).
        """
        return self.end(job, status, run, success) == Finish.MOVED

    def end(self, job: JobRecord, status: JobStatus, run: int | None = None, success: Success | None = None) -> int:
        """`finish`, answering FINISH's code (`Finish`): LOST when `run` was claimed away (nothing changes)."""
        assert status.terminal and (success is None or status is JobStatus.SUCCEEDED)
        return self._move(job, status.value, success.model_dump() if success else {}, run)

    def fail(self, job: JobRecord, code: str, message: str, status: int, run: int | None = None) -> bool:
        """Fail a job with an error and refund it."""
        fields = {"error_code": code, "error_message": message, "error_status": status}
        return self._move(job, JobStatus.FAILED.value, fields, run) == Finish.MOVED

    def cancel(self, job: JobRecord) -> Cancel:
        """Cancel a queued job now (refunded), or ask its worker to cancel a running one."""
        code = self._move(job, "cancel", {})
        return {2: Cancel.CANCELED, 3: Cancel.REQUESTED}.get(code, Cancel.TERMINAL)
