"""Job records in Redis, their states, and the scripts that move them (and settle credits).

Every change of a job's state is one Lua script, so credits, batch counters, the waiting sets and
webhook events (the outbox) always move together with it:
ACCEPT (N new jobs), START (a worker takes one, under a lease), FINISH (terminal, or a cancel request),
RENEW (a worker's heartbeat keeps its leases), CLAIM_LAPSED (a dead worker's jobs go back to their queue), CLAIM_DUE.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis

from shared import names
from shared.errors import IdempotencyMismatch, InsufficientCredits, NoCapacity, QueueFull, TooManyJobs, Unauthorized


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


ACCEPT = """
-- Accept N jobs in one step, all or nothing: the key is live, the credits are reserved, the records,
-- waiting and rescue entries, batch and idempotency records are written together.
-- KEYS[1] key hash  KEYS[2] credit balance  KEYS[3] idempotency record  KEYS[4] stats  KEYS[5] unsent set
-- KEYS[6] workers set  KEYS[7] active count of the key  KEYS[8] batch hash  KEYS[9] batch job list
-- KEYS[10..12] waiting sets (high, normal, low)  KEYS[13..] per job: job hash, hold, params (3 keys each)
-- ARGV[1] now (epoch s)  ARGV[2] cost per job  ARGV[3] per job, the index (1..3) of its waiting set, one digit each
-- ARGV[4] idempotency fingerprint ('' = no idempotency key)  ARGV[5] idempotency ttl (s)
-- ARGV[6] answer status  ARGV[7] answer body  ARGV[8] need a worker heard since (epoch s; '' = no check)
-- ARGV[9] most jobs queued in all (0 = no bound)  ARGV[10] most unfinished jobs per key (0 = no bound)
-- ARGV[11] batch fields as a JSON object ('' = no batch)
-- ARGV[12..] per job: its fields as a JSON object, its params (JSON text; a string of their own keeps the
-- hash small enough for Redis's compact encoding)
-- Returns {code, n}: 1 accepted (n = balance); 2 replay (n = status, 3rd = body); 3 idempotency key reused
-- with another body; 0 not enough credits (n = balance); -1 unknown key; -2 disabled key; -3 no worker;
-- -4 queue full (n = queued); -5 too many unfinished jobs of this key (n = unfinished)
if ARGV[4] ~= '' then
  local seen = redis.call('HMGET', KEYS[3], 'fingerprint', 'status', 'body')
  if seen[1] then
    if seen[1] ~= ARGV[4] then return {3, 0} end
    return {2, tonumber(seen[2]), seen[3]}
  end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
if redis.call('HGET', KEYS[1], 'disabled') == '1' then return {-2, 0} end
local n = (#ARGV - 11) / 2
local cost = tonumber(ARGV[2]) * n
local balance = tonumber(redis.call('GET', KEYS[2]) or '0')
if balance < cost then return {0, balance} end
if ARGV[8] ~= '' and redis.call('ZCOUNT', KEYS[6], ARGV[8], '+inf') == 0 then return {-3, 0} end
if tonumber(ARGV[9]) > 0 then
  local queued = redis.call('ZCARD', KEYS[10]) + redis.call('ZCARD', KEYS[11]) + redis.call('ZCARD', KEYS[12])
  if queued + n > tonumber(ARGV[9]) then return {-4, queued} end
end
local active = tonumber(redis.call('GET', KEYS[7]) or '0')
if tonumber(ARGV[10]) > 0 and active + n > tonumber(ARGV[10]) then return {-5, active} end
balance = redis.call('DECRBY', KEYS[2], cost)
redis.call('INCRBY', KEYS[7], n)
local now = tonumber(ARGV[1])
for i = 1, n do
  local fields = cjson.decode(ARGV[10 + 2 * i])
  local job, hold = KEYS[10 + 3 * i], KEYS[11 + 3 * i]
  for k, v in pairs(fields) do redis.call('HSET', job, k, v) end
  redis.call('SET', KEYS[12 + 3 * i], ARGV[11 + 2 * i])
  redis.call('SET', hold, ARGV[2])  -- no TTL: deleted when the job is settled, however long that takes
  local waiting = KEYS[9 + tonumber(string.sub(ARGV[3], i, i))]
  redis.call('ZADD', waiting, now + i * 1e-6, fields['id'])  -- before the publish, so START always finds it
  redis.call('ZADD', KEYS[5], now, fields['id'])
  if ARGV[11] ~= '' then redis.call('RPUSH', KEYS[9], fields['id']) end
end
if ARGV[11] ~= '' then
  for k, v in pairs(cjson.decode(ARGV[11])) do redis.call('HSET', KEYS[8], k, v) end
  redis.call('HSET', KEYS[8], 'total', n, 'queued', n, 'running', 0, 'succeeded', 0, 'failed', 0, 'canceled', 0)
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[3], 'fingerprint', ARGV[4], 'status', ARGV[6], 'body', ARGV[7])
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
redis.call('HINCRBY', KEYS[4], 'jobs_accepted', n)
redis.call('HINCRBY', KEYS[4], 'credits_reserved', cost)
return {1, balance}
"""

START = """
-- A worker takes a job: queued|running -> running, counting the attempt, under a lease this worker holds.
-- KEYS[1] job hash  KEYS[2] waiting set of its queue  KEYS[3] batch hash  KEYS[4] outbox  KEYS[5] key hash
-- KEYS[6] leases
-- ARGV[1] now (ISO)  ARGV[2] max attempts  ARGV[3] job id  ARGV[4] now (epoch s)  ARGV[5] event id
-- ARGV[6] worker (its Celery hostname)  ARGV[7] lease end (epoch s)
-- ARGV[8] the run a retry message continues ('' for any other message)
-- Returns {verdict, attempt, event, run}: verdict 'run' (run = the new run, the token of its lease); 'skip'
-- (missing, terminal, or running under a live lease of another run: a stale broker message, restored after
-- the visibility timeout or replaced by a claim); 'cancel' (a cancel was asked, or the key was disabled: the
-- caller cancels it); 'exhausted' (past max attempts: the caller fails it).
-- event is the job.started webhook event written to the outbox (first attempt only), or ''
redis.call('ZREM', KEYS[2], ARGV[3])
local job = redis.call('HMGET', KEYS[1], 'status', 'cancel_requested', 'batch_id', 'webhook_url', 'webhook_events',
                       'key_id', 'attempts', 'run')
local status = job[1]
if not status or status == 'succeeded' or status == 'failed' or status == 'canceled' then return {'skip', 0, '', 0} end
if status == 'running' and ARGV[8] ~= job[8] then
  local lease = redis.call('ZSCORE', KEYS[6], ARGV[3])
  if lease and tonumber(lease) > tonumber(ARGV[4]) then return {'skip', 0, '', 0} end  -- someone runs it now
end
if job[2] == '1' or redis.call('HGET', KEYS[5], 'disabled') == '1' then return {'cancel', 0, '', 0} end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempt > tonumber(ARGV[2]) then return {'exhausted', attempt, '', 0} end
local run = redis.call('HINCRBY', KEYS[1], 'run', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1], 'worker', ARGV[6])
redis.call('ZADD', KEYS[6], ARGV[7], ARGV[3])
local event = ''
if status == 'queued' then
  if job[3] then redis.call('HINCRBY', KEYS[3], 'queued', -1); redis.call('HINCRBY', KEYS[3], 'running', 1) end
  if attempt == 1 and job[4] and job[5] and string.find(job[5], '"started"', 1, true) then
    event = cjson.encode({id = ARGV[5], type = 'job.started', job_id = ARGV[3], key_id = job[6], url = job[4],
                          at = tonumber(ARGV[4])})
    redis.call('ZADD', KEYS[4], ARGV[4], event)
  end
end
return {'run', attempt, event, run}
"""

FINISH = """
-- Move a job to a terminal state and settle its credits, once; or ask a running job to cancel.
-- KEYS[1] job hash  KEYS[2] hold  KEYS[3] credit balance of its key  KEYS[4] done channel  KEYS[5] stats
-- KEYS[6] active count of the key  KEYS[7] batch hash  KEYS[8] batch job list  KEYS[9] outbox
-- KEYS[10] expiring set  KEYS[11] waiting set of its queue  KEYS[12] params of the job
-- KEYS[13] webhook delivery log of the job  KEYS[14] leases
-- ARGV[1] terminal status, or 'cancel' (queued -> canceled; running -> cancel requested)
-- ARGV[2] now (epoch s)  ARGV[3] retention (s)  ARGV[4] job event id  ARGV[5] batch event id  ARGV[6] job id
-- ARGV[7] the run that ends it ('' = whoever runs it: the gateway's cancel, a job no run holds)
-- ARGV[8..] field, value pairs to store with the terminal state (finished_at first)
-- Success after a cancel request turns into canceled (and the fields are not stored).
-- Returns {code, job event, batch event}: code 1 moved (to ARGV[1]), 2 moved to canceled instead,
-- 3 cancel requested (it is running), 0 already terminal or missing (nothing changes), -1 the run named is no
-- longer the job's (its lease lapsed and the job was claimed: nothing changes, its result is not the job's)
local job = redis.call('HMGET', KEYS[1], 'status', 'cancel_requested', 'batch_id', 'webhook_url', 'webhook_events',
                       'key_id', 'run')
local status = job[1]
if not status then return {0, '', ''} end
if ARGV[7] ~= '' and ARGV[7] ~= job[7] then return {-1, '', ''} end
if status == 'succeeded' or status == 'failed' or status == 'canceled' then return {0, '', ''} end
local target, code = ARGV[1], 1
if target == 'cancel' then
  if status == 'running' then
    redis.call('HSET', KEYS[1], 'cancel_requested', '1')
    return {3, '', ''}
  end
  target, code = 'canceled', 2
elseif target == 'succeeded' and job[2] == '1' then
  target, code = 'canceled', 2
end
redis.call('HSET', KEYS[1], 'status', target)
if code == 1 and #ARGV > 7 then redis.call('HSET', KEYS[1], unpack(ARGV, 8)) end
if code == 2 then redis.call('HSET', KEYS[1], 'finished_at', ARGV[9]) end
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
redis.call('ZREM', KEYS[11], ARGV[6])
redis.call('ZREM', KEYS[14], ARGV[6])
redis.call('HINCRBY', KEYS[5], 'jobs_' .. target, 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[12], ARGV[3])
redis.call('EXPIRE', KEYS[13], ARGV[3])  -- the delivery log goes with its job
redis.call('ZADD', KEYS[10], tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[6])
local now = tonumber(ARGV[2])
local job_event, batch_event = '', ''
if job[4] and (not job[5] or string.find(job[5], '"completed"', 1, true)) then
  job_event = cjson.encode({id = ARGV[4], type = 'job.' .. target, job_id = ARGV[6], key_id = job[6], url = job[4],
                            at = now})
  redis.call('ZADD', KEYS[9], now, job_event)
end
if job[3] then
  redis.call('HINCRBY', KEYS[7], status, -1)
  redis.call('HINCRBY', KEYS[7], target, 1)
  local c = redis.call('HMGET', KEYS[7], 'total', 'succeeded', 'failed', 'canceled', 'webhook_url')
  if tonumber(c[2]) + tonumber(c[3]) + tonumber(c[4]) == tonumber(c[1]) then
    -- Only the step that ends the last job gets here: batch.completed is written exactly once.
    redis.call('HSET', KEYS[7], 'finished_at', ARGV[9])
    redis.call('EXPIRE', KEYS[7], ARGV[3])
    redis.call('EXPIRE', KEYS[8], ARGV[3])
    if c[5] then
      batch_event = cjson.encode({id = ARGV[5], type = 'batch.completed', batch_id = job[3], key_id = job[6],
                                  url = c[5], at = now})
      redis.call('ZADD', KEYS[9], now, batch_event)
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

# Fields stored as JSON; everything else is a plain string.
_JSON_FIELDS = ("params", "objects", "outputs", "metadata", "timings", "webhook_events")
_INT_FIELDS = ("attempts", "cost", "width", "height", "error_status", "run")
_QUEUE_INDEX = {queue: i for i, queue in enumerate(names.INFER_QUEUES, start=1)}
IDEMPOTENCY_TTL_S = 24 * 3600


def now_iso() -> str:
    """Current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
class NewJob:
    """What the gateway hands the worker: one job's record as accepted (the image stays in storage)."""

    id: str
    key_id: str
    mode: str  # "sync" (the drop-in) or "async"
    params: dict[str, Any]
    cost: int
    queue: str
    priority: str = "normal"
    created_at: str = field(default_factory=now_iso)
    input_key: str | None = None
    input_url: str | None = None
    input_type: str | None = None
    width: int | None = None
    height: int | None = None
    batch_id: str | None = None
    metadata: dict[str, Any] | None = None
    webhook_url: str | None = None
    webhook_events: list[str] | None = None
    model: str | None = None  # the model preset (SAMQ_MODELS) the job is for; the worker records the one it ran

    def record(self) -> dict[str, str]:
        """The Redis hash fields of the new job (its params are stored beside it)."""
        fields = {k: v for k, v in self.__dict__.items() if v is not None and k != "params"}
        return _encode({**fields, "status": JobStatus.QUEUED.value, "attempts": 0})


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
    retry_after_s: int = 5


class JobStore:
    """Reads and writes job records; the only code that changes a job's status."""

    def __init__(self, client: redis.Redis, retention_s: int,
                 on_events: Callable[[list[str]], None] | None = None, lease_s: float = 15.0) -> None:
        self.client = client
        self.retention_s = retention_s
        self.lease_s = lease_s  # how long a START's lease lasts unless its worker's heartbeat renews it
        self.on_events = on_events or (lambda events: None)  # hands outbox events to the webhook queue
        self._accept = client.register_script(ACCEPT)
        self._start = client.register_script(START)
        self._finish = client.register_script(FINISH)
        self._renew = client.register_script(RENEW)
        self._claim_lapsed = client.register_script(CLAIM_LAPSED)
        self._claim = client.register_script(CLAIM_DUE)

    def accept(self, jobs: list[NewJob], idem: Idempotency | None = None, batch: dict[str, Any] | None = None,
               limits: Limits | None = None) -> Accepted:
        """Reserve credits and record `jobs` (all of one key) in one step; raises, changing nothing."""
        limits = limits or Limits()
        first = jobs[0]
        keys = [names.api_key(first.key_id), names.credits(first.key_id),
                names.idempotency(first.key_id, idem.key) if idem else names.idempotency(first.key_id, ""),
                names.STATS, names.UNSENT, names.WORKERS, names.active(first.key_id),
                names.batch(first.batch_id or ""), names.batch_jobs(first.batch_id or ""),
                *(names.waiting(q) for q in names.INFER_QUEUES)]
        args: list[Any] = [time.time(), first.cost, "".join(str(_QUEUE_INDEX[job.queue]) for job in jobs),
                           idem.fingerprint if idem else "", IDEMPOTENCY_TTL_S,
                           idem.status if idem else 0, idem.body if idem else "",
                           "" if limits.workers_since is None else limits.workers_since,
                           limits.max_queued, limits.max_active_per_key,
                           _json(_encode(batch)) if batch else ""]
        for job in jobs:
            keys += [names.job(job.id), names.hold(job.id), names.params(job.id)]
            args += [_json(job.record()), _json(job.params)]
        code, value, *rest = self._accept(keys=keys, args=args)
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
            -3: lambda: NoCapacity("no worker is running; nothing was charged", limits.retry_after_s),
            -4: lambda: QueueFull(f"the queue is full ({value} jobs waiting); nothing was charged",
                                  limits.retry_after_s),
            -5: lambda: TooManyJobs(f"this key has {value} unfinished jobs, the most allowed is "
                                    f"{limits.max_active_per_key}; nothing was charged", limits.retry_after_s),
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
            ids += [i.decode() for i in self.client.zrange(names.waiting(queue), 0, limit - len(ids) - 1)]
        return ids

    def claim_unsent(self, older_than_s: float, limit: int = 100) -> list[str]:
        """Ids of jobs recorded over `older_than_s` ago and never sent; each id is handed out once."""
        ids = self._claim(keys=[names.UNSENT], args=[time.time() - older_than_s, limit])
        return [i.decode() for i in ids]

    def claim_expired(self, limit: int = 100) -> list[str]:
        """Ids of jobs whose retention has ended (their records are gone); each id is handed out once."""
        return [i.decode() for i in self._claim(keys=[names.EXPIRING], args=[time.time(), limit])]

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job record, decoded, or None."""
        with self.client.pipeline(transaction=False) as pipe:
            raw, params = pipe.hgetall(names.job(job_id)).get(names.params(job_id)).execute()
        if not raw:
            return None
        return {**_decode(raw), "params": json.loads(params) if params else {}}

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

    def start(self, job: dict[str, Any], max_attempts: int, worker: str = "", retry_of: int | None = None) -> Start:
        """Mark running under a lease of `worker` and count the attempt, or say why not (see START); publishes
        job.started. `retry_of`: the run a retry message continues (it may start while that run's lease lasts)."""
        keys = [names.job(job["id"]), names.waiting(job.get("queue", names.QUEUE_NORMAL)),
                names.batch(job.get("batch_id", "")), names.OUTBOX, names.api_key(job["key_id"]), names.LEASES]
        now = time.time()
        verdict, attempt, event, run = self._start(
            keys=keys, args=[now_iso(), max_attempts, job["id"], now, event_id(), worker, now + self.lease_s,
                             "" if retry_of is None else retry_of])
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
        ids = [i.decode() for i in self.client.zrangebyscore(names.LEASES, "-inf", now, start=0, num=limit)]
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

    def _move(self, job: dict[str, Any], target: str, fields: dict[str, Any], run: int | None = None) -> int:
        finished_at = fields.setdefault("finished_at", now_iso())
        args: list[Any] = [target, time.time(), self.retention_s, event_id(), event_id(), job["id"],
                           "" if run is None else run, "finished_at", finished_at]
        for key, value in _encode(fields).items():
            if key != "finished_at":
                args += [key, value]
        batch_id = job.get("batch_id", "")
        keys = [names.job(job["id"]), names.hold(job["id"]), names.credits(job["key_id"]), names.job_done(job["id"]),
                names.STATS, names.active(job["key_id"]), names.batch(batch_id), names.batch_jobs(batch_id),
                names.OUTBOX, names.EXPIRING, names.waiting(job.get("queue", names.QUEUE_NORMAL)),
                names.params(job["id"]), names.deliveries(job["id"]), names.LEASES]
        code, *events = self._finish(keys=keys, args=args)
        events = [e.decode() for e in events if e]
        if events:
            self.on_events(events)
        return int(code)

    def finish(self, job: dict[str, Any], status: JobStatus, run: int | None = None, **fields: Any) -> bool:
        """Move to a terminal state; succeeded commits the hold, anything else refunds it.

        False when the job was already terminal, or was canceled meanwhile (then it ends canceled, refunded), or
        `run` (the run ending it) is no longer the job's (see `end`).
        """
        return self.end(job, status, run, **fields) == Finish.MOVED

    def end(self, job: dict[str, Any], status: JobStatus, run: int | None = None, **fields: Any) -> int:
        """`finish`, answering FINISH's code (`Finish`): LOST when `run` was claimed away (nothing changes)."""
        assert status.terminal
        return self._move(job, status.value, fields, run)

    def fail(self, job: dict[str, Any], code: str, message: str, status: int, run: int | None = None) -> bool:
        """Fail a job with an error and refund it."""
        return self.finish(job, JobStatus.FAILED, run, error_code=code, error_message=message, error_status=status)

    def cancel(self, job: dict[str, Any]) -> Cancel:
        """Cancel a queued job now (refunded), or ask its worker to cancel a running one."""
        code = self._move(job, "cancel", {})
        return {2: Cancel.CANCELED, 3: Cancel.REQUESTED}.get(code, Cancel.TERMINAL)


def _json(value: Any) -> str:
    """Compact JSON with text kept as UTF-8 (not \\u escapes): what is stored weighs what the request bounds
    count (shared.schemas: metadata bytes, prompt characters), not up to 3 times that."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _encode(record: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in record.items():
        if value is None:
            continue
        out[key] = _json(value) if key in _JSON_FIELDS else str(value)
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
