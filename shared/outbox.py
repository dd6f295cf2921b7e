"""From the outbox to the webhook queue: publish events, resend those a dead publisher left, release retries."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable

import redis
from celery import Celery

from shared import names
from shared.redis_client import script

log = logging.getLogger(__name__)
OUTBOX_GRACE_S = 10.0  # an event still in the outbox this long after it was written lost its publisher
LEASE_S = 30.0  # a claimed entry whose taker died before sending it is taken again after this long

LEASE_DUE = """
-- Lease the due members of a sorted set: whoever gets one sends it, then removes it.
-- KEYS[1] a sorted set (score: epoch s when due)
-- ARGV[1] due at or before (epoch s)  ARGV[2] most to take  ARGV[3] end of the lease (epoch s)
-- Returns the members taken; each is re-scored to the lease's end, so if its taker dies it comes back then
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[3], member) end
return due
"""

_LEASE_DUE = script(LEASE_DUE)


def send(app: Celery, event: str, attempt: int = 1) -> None:
    """Hand one attempt of an event (its JSON) to the webhook queue."""
    app.send_task(names.TASK_DELIVER, args=[event, attempt], queue=names.QUEUE_WEBHOOKS)


def publish(app: Celery, client: redis.Redis, events: Iterable[str | bytes]) -> None:
    """Send the events a Lua step wrote to the outbox, then remove them from it.

    Never raises: an event that cannot be sent now stays in the outbox, and the webhook worker's sweep sends it.
    """
    for event in events:
        raw = event.decode() if isinstance(event, bytes) else event
        try:
            send(app, raw)
            client.zrem(names.OUTBOX, raw)
        except Exception:
            log.warning("webhook event not sent now; the outbox sweep will send it", exc_info=True)


def publisher(app: Celery, client: redis.Redis) -> Callable[[list[str]], None]:
    """A JobStore's `on_events`: publish what its Lua steps wrote to the outbox."""
    return lambda events: publish(app, client, events)


def schedule_retry(client: redis.Redis, event: str, attempt: int, due: float) -> None:
    """Keep attempt `attempt` of an event until `due` (epoch s); `release_due` sends it then."""
    client.zadd(names.WEBHOOK_RETRIES, {json.dumps({"event": event, "attempt": attempt}): due})


def _claim(client: redis.Redis, key: str, due_before: float, limit: int) -> list[str]:
    taken = _LEASE_DUE(keys=[key], args=[due_before, limit, time.time() + LEASE_S], client=client)
    return [m.decode() for m in taken]


def sweep(app: Celery, client: redis.Redis, older_than_s: float = OUTBOX_GRACE_S, limit: int = 100) -> int:
    """Publish outbox events older than `older_than_s` (their publisher died); returns how many."""
    events = _claim(client, names.OUTBOX, time.time() - older_than_s, limit)
    publish(app, client, events)
    return len(events)


def release_due(app: Celery, client: redis.Redis, limit: int = 100) -> int:
    """Send the retries whose time has come; returns how many."""
    entries = _claim(client, names.WEBHOOK_RETRIES, time.time(), limit)
    for member in entries:
        entry = json.loads(member)
        send(app, entry["event"], entry["attempt"])
        client.zrem(names.WEBHOOK_RETRIES, member)
    return len(entries)
