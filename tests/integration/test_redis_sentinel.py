"""shared.redis_client against real processes: a primary, two replicas and three Sentinels on loopback.

WAIT on the write's own connection (and what WAIT on another connection would wrongly say), the clients and the
Celery broker following a failover without being rebuilt."""

from __future__ import annotations

import time

import pytest
import redis

from harness.procs import wait_until
from shared import names
from shared.celery_apps import make_celery
from shared.errors import NotReplicated
from shared.redis_client import broker_url, connect, run_replicated
from shared.settings import Settings
from tests.sentinel import RedisGroup

pytestmark = pytest.mark.timeout(120)

# KEYS[1] counter; ARGV none. Returns the new value (a write WAIT then has to see replicated).
BUMP = "return redis.call('INCR', KEYS[1])"


@pytest.fixture
def group(tmp_path):
    group = RedisGroup(tmp_path).start()
    yield group
    group.stop()


def _settings(group: RedisGroup, **extra: object) -> Settings:
    env = group.env(3)
    return Settings(redis_url=env["SAMQ_REDIS_URL"], redis_sentinels=env["SAMQ_REDIS_SENTINELS"],
                    redis_sentinel_master=env["SAMQ_REDIS_SENTINEL_MASTER"], **extra)


def test_run_replicated_returns_once_the_replicas_have_the_write(group):
    client = connect(_settings(group))
    script = client.register_script(BUMP)
    assert run_replicated(client, script, ["n"], [], 2, 2000) == 1
    # Acknowledged by both: each replica already holds the write, with no waiting here.
    assert [redis.Redis(port=p, db=3).get("n") for p in group.replica_ports] == [b"1", b"1"]
    assert run_replicated(client, script, ["n"], [], 0, 1) == 2  # off: the script alone


def test_not_replicated_carries_the_result_and_waits_its_timeout(group):
    client = connect(_settings(group))
    script = client.register_script(BUMP)
    run_replicated(client, script, ["n"], [], 1, 2000)
    other = connect(_settings(group))  # another connection, whose own writes did reach the replicas
    other.set("other", 1)
    assert other.wait(2, 2000) == 2
    for port in group.replica_ports:
        group.pause(port)
    try:
        started = time.monotonic()
        with pytest.raises(NotReplicated) as caught:
            run_replicated(client, script, ["n"], [], 1, 300)
        assert time.monotonic() - started >= 0.3
        assert caught.value.result == 2 and caught.value.acked == 0  # the primary did run the write
        assert caught.value.status == 503 and caught.value.code == "unavailable" and caught.value.retry_after_s
        # Why WAIT must share the write's connection: on one whose last write was replicated, WAIT counts the paused
        # replicas as up to date at once, although the write above is on the primary alone.
        assert other.wait(1, 300) == 2
    finally:
        for port in group.replica_ports:
            group.resume(port)


def test_clients_and_broker_follow_a_failover(group):
    settings = _settings(group)
    client = connect(settings, retry=redis.retry.Retry(redis.backoff.ExponentialBackoff(cap=1.0, base=0.1), 40),
                     retry_on_error=[redis.ConnectionError, redis.TimeoutError])
    plain = connect(settings)  # no retry: what the gateway has; its callers see errors until the failover ends
    celery = make_celery(settings)
    assert broker_url(settings).startswith("sentinel://127.0.0.1:")
    celery.send_task(names.TASK_SEGMENT, args=["before"], queue=names.QUEUE_NORMAL)
    old = group.primary()
    assert old == group.first_primary
    run_replicated(client, client.register_script(BUMP), ["n"], [], 2, 2000)
    pubsub = plain.pubsub()
    pubsub.subscribe("chan")
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"

    group.kill(old)
    killed = time.monotonic()
    assert client.incr("n") == 2  # retried through the failover, on the new primary: the replicated write is there
    took = time.monotonic() - killed
    new = group.primary()
    assert new != old and new in group.replica_ports
    assert redis.Redis(port=new, db=3).get("n") == b"2"
    assert took < 30, f"the retrying client reached the new primary only after {took:.1f} s"
    wait_until(lambda: plain.ping(), 10, "the plain client to reach the new primary")
    with pytest.raises(redis.ConnectionError):  # the old primary's pub/sub connection is dead ...
        pubsub.get_message(timeout=1)
    again = plain.pubsub()  # ... and a new one (what gateway/waiter.py does) reaches the new primary
    again.subscribe("chan")
    assert again.get_message(timeout=1)["type"] == "subscribe"
    celery.send_task(names.TASK_SEGMENT, args=["after"], queue=names.QUEUE_NORMAL)
    assert redis.Redis(port=new, db=3).llen(names.QUEUE_NORMAL) == 2  # both messages, on the new primary
    print(f"\nfigure: retrying client back on the new primary {took:.1f} s after the kill")
