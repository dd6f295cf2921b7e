"""Which workers are alive: each announces itself in one sorted set, scored by its last heartbeat."""

from __future__ import annotations

import time
from typing import cast

import redis

from shared import names


def announce(client: redis.Redis, hostname: str) -> None:
    """Record a heartbeat for `hostname`."""
    client.zadd(names.WORKERS, {hostname: time.time()})


def retire(client: redis.Redis, hostname: str) -> None:
    """Forget a worker that stops cleanly."""
    client.zrem(names.WORKERS, hostname)


def alive(client: redis.Redis, heartbeat_s: float) -> list[str]:
    """Hostnames heard from within three heartbeats (one lookup, whatever the keyspace holds)."""
    since = time.time() - 3 * heartbeat_s
    client.zremrangebyscore(names.WORKERS, "-inf", f"({since - 3600}")  # long gone: tidy up
    # cast: redis-py types replies as bytes | str (it cannot tell decode_responses); samq's clients read bytes
    return [h.decode() for h in cast(list[bytes], client.zrangebyscore(names.WORKERS, since, "+inf"))]
