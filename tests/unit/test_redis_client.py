"""Settings for Sentinel and replicas, and the clients and broker URL built from them (no server needed)."""

from __future__ import annotations

import pydantic
import pytest
import redis
from redis.sentinel import SentinelConnectionPool

from shared.celery_apps import make_celery, make_webhook_celery
from shared.redis_client import broker_client, broker_transport_options, broker_url, connect
from shared.settings import Settings

SENTINELS = "s0:26379, s1:26380,[fd00::2]:26381"


def _sentinel(**extra: object) -> Settings:
    return Settings(redis_sentinels=SENTINELS, redis_sentinel_master="samq", **extra)


def test_sentinel_list_is_parsed_into_pairs():
    assert _sentinel().sentinels == (("s0", 26379), ("s1", 26380), ("fd00::2", 26381))
    assert Settings(redis_sentinels="").sentinels == ()


@pytest.mark.parametrize("bad", ["s0", "s0:", ":26379", "s0:port", "s0:70000", "s0:26379,s1"])
def test_a_malformed_sentinel_list_is_refused_naming_the_entry(bad):
    with pytest.raises(pydantic.ValidationError, match="is not host:port"):
        Settings(redis_sentinels=bad, redis_sentinel_master="samq")


def test_sentinels_need_a_master_name_and_a_plain_redis_url():
    with pytest.raises(pydantic.ValidationError, match="SAMQ_REDIS_SENTINEL_MASTER"):
        Settings(redis_sentinels=SENTINELS)
    with pytest.raises(pydantic.ValidationError, match="redis:// URL"):
        _sentinel(redis_url="rediss://h:6380/0")


def test_replica_settings_are_bounded():
    assert (Settings().redis_min_replicas, Settings().redis_wait_timeout_ms) == (0, 1000)
    with pytest.raises(pydantic.ValidationError):
        Settings(redis_min_replicas=-1)
    with pytest.raises(pydantic.ValidationError):
        Settings(redis_wait_timeout_ms=0)  # WAIT 0 would block for ever


def test_without_sentinels_clients_and_broker_use_the_url():
    s = Settings(redis_url="redis://:pw@h:6390/4")
    client = connect(s, health_check_interval=30)
    kwargs = client.connection_pool.connection_kwargs
    assert {k: kwargs[k] for k in ("password", "host", "port", "db", "health_check_interval")} == {
        "password": "pw", "host": "h", "port": 6390, "db": 4, "health_check_interval": 30}
    assert broker_url(s) == "redis://:pw@h:6390/4" and broker_transport_options(s) == {}


def test_with_sentinels_clients_ask_them_for_the_primary_with_the_urls_db_and_password():
    s = _sentinel(redis_url="redis://:p%40ss@ignored:1/5")
    client = connect(s, socket_connect_timeout=1)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "samq"
    assert {k: pool.connection_kwargs[k] for k in ("db", "password", "socket_connect_timeout")} == {
        "db": 5, "password": "p@ss", "socket_connect_timeout": 1}
    assert [(c.connection_pool.connection_kwargs["host"], c.connection_pool.connection_kwargs["port"])
            for c in pool.sentinel_manager.sentinels] == [("s0", 26379), ("s1", 26380), ("fd00::2", 26381)]


def test_with_sentinels_the_broker_is_kombus_sentinel_transport():
    s = _sentinel(redis_url="redis://:p%40ss@ignored:1/5")
    assert broker_url(s) == ("sentinel://:p%40ss@s0:26379/5;sentinel://:p%40ss@s1:26380/5;"
                             "sentinel://:p%40ss@[fd00::2]:26381/5")
    for app in (make_celery(s), make_webhook_celery(s)):
        options = app.conf.broker_transport_options
        assert options["master_name"] == "samq"
        conn = app.connection_for_write()
        assert conn.transport_cls == "sentinel" and (conn.hostname, conn.port, conn.password) == (
            "s0", 26379, "p@ss") and conn.virtual_host == "5"
        assert [u.split("@")[1] for u in conn.alt] == ["s0:26379/5", "s1:26380/5", "[fd00::2]:26381/5"]
    assert make_webhook_celery(s).conf.broker_transport_options["global_keyprefix"]  # its own keyspace is kept


def test_an_explicit_broker_url_wins_over_the_sentinels():
    s = _sentinel(broker_url="redis://broker:6379/1")
    assert broker_url(s) == "redis://broker:6379/1" and broker_transport_options(s) == {}
    assert broker_client(s).connection_pool.connection_kwargs["host"] == "broker"
    assert isinstance(broker_client(_sentinel()).connection_pool, SentinelConnectionPool)
    assert isinstance(connect(s), redis.Redis)
