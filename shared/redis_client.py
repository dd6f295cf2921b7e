"""Every Redis client samq opens, built from Settings: the one address of SAMQ_REDIS_URL, or the primary the Sentinels
of SAMQ_REDIS_SENTINELS name (followed across failovers); the Celery broker's URL to match; and writes that wait for
replicas (SAMQ_REDIS_MIN_REPLICAS)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import redis
from redis.commands.core import Script
from redis.connection import parse_url
from redis.sentinel import Sentinel

from shared.errors import NotReplicated
from shared.settings import Settings

# A Sentinel that does not answer within this long is skipped for the next one (never a hung request).
SENTINEL_TIMEOUT_S = 1.0
NOT_REPLICATED_RETRY_AFTER_S = 5


def connect(settings: Settings, **options: Any) -> redis.Redis:
    """A client on samq's Redis; with Sentinels, on whichever server they name primary now.

    `options` are redis-py's (retry, health_check_interval, socket timeouts...), for either kind. Through Sentinel each
    new connection asks the Sentinels for the primary, and a connection error or a READONLY answer (the old primary,
    now a replica) drops the connection, so the client's next try (its `retry`) reaches the new primary.
    """
    if not settings.redis_sentinels:
        return redis.Redis.from_url(settings.redis_url, **options)
    return sentinel(settings).master_for(settings.redis_sentinel_master, **_master_kwargs(settings), **options)


def sentinel(settings: Settings) -> Sentinel:
    """The Sentinels of SAMQ_REDIS_SENTINELS (their own connections: short timeouts, no password)."""
    return Sentinel(list(settings.sentinels),
                    sentinel_kwargs={"socket_timeout": SENTINEL_TIMEOUT_S,
                                     "socket_connect_timeout": SENTINEL_TIMEOUT_S})


def broker_client(settings: Settings, **options: Any) -> redis.Redis:
    """A client on the Celery broker's Redis: SAMQ_BROKER_URL when it is set, else samq's own Redis (`connect`)."""
    if settings.broker_url:
        return redis.Redis.from_url(settings.broker_url, **options)
    return connect(settings, **options)


def broker_url(settings: Settings) -> str:
    """The Celery broker URL: SAMQ_BROKER_URL, else SAMQ_REDIS_URL, or kombu's `sentinel://h1:p1/db;sentinel://...`."""
    if settings.broker_url or not settings.redis_sentinels:
        return settings.broker
    kwargs = _master_kwargs(settings)
    auth = ""
    if kwargs.get("password") or kwargs.get("username"):
        auth = f"{quote(kwargs.get('username') or '', safe='')}:{quote(kwargs.get('password') or '', safe='')}@"
    # Every entry carries the password and db: kombu reads them from whichever entry it is connected through.
    return ";".join(f"sentinel://{auth}{_netloc(host, port)}/{kwargs['db']}" for host, port in settings.sentinels)


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    """The transport options the broker URL needs beyond a Celery app's own: the Sentinels' master name."""
    if settings.broker_url or not settings.redis_sentinels:
        return {}
    options: dict[str, Any] = {"master_name": settings.redis_sentinel_master,
                               "sentinel_kwargs": {"socket_timeout": SENTINEL_TIMEOUT_S,
                                                   "socket_connect_timeout": SENTINEL_TIMEOUT_S}}
    return options


def script(source: str) -> Script:
    """A Lua script registered once at import, run by EVALSHA on the client each call passes (`client=`)."""
    return Script(redis.Redis(), source)  # this client only gives the text's encoding: it never connects


def run_replicated(client: redis.Redis, script: Script, keys: list[Any], args: list[Any], min_replicas: int,
                   timeout_ms: int) -> Any:
    """Run a registered script, then `WAIT min_replicas timeout_ms` on the same connection; its result, or
    NotReplicated (carrying the result) when fewer replicas acknowledged the write in time.

    WAIT counts the replicas that have every write made on the calling connection: a pooled client could send it on
    another connection, so both go in one pipeline (no MULTI: WAIT is refused inside a transaction).
    """
    if min_replicas <= 0:
        return script(keys=keys, args=args, client=client)
    with client.pipeline(transaction=False) as pipe:
        script(keys=keys, args=args, client=pipe)
        pipe.wait(min_replicas, timeout_ms)
        result, acked = pipe.execute()
    if acked < min_replicas:
        raise NotReplicated(f"the store could not confirm the write on {min_replicas} replica(s) within "
                            f"{timeout_ms} ms ({acked} did); retry shortly", NOT_REPLICATED_RETRY_AFTER_S,
                            result=result, acked=acked)
    return result


def _master_kwargs(settings: Settings) -> dict[str, Any]:
    """Database and credentials of SAMQ_REDIS_URL, for the primary the Sentinels name (its host is unused)."""
    parsed = parse_url(settings.redis_url)
    kwargs: dict[str, Any] = {"db": int(parsed.get("db") or 0)}
    for name in ("username", "password"):
        if parsed.get(name):
            kwargs[name] = parsed[name]
    return kwargs


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
