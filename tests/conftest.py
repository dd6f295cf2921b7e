"""Fixtures every suite uses: a real Redis (never mocked), flushed per test for the pure suites."""

from __future__ import annotations

import pytest
import redis

from harness.stack import REDIS_HOST, REDIS_PORT

UNIT_DB = 15


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The test Redis's base URL; fails loudly if it does not answer (.ci/run starts one)."""
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=2)
    client.ping()
    return f"redis://{REDIS_HOST}:{REDIS_PORT}"


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """A Redis database flushed before each test."""
    url = f"{redis_server}/{UNIT_DB}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def rclient(redis_url: str) -> redis.Redis:
    """A client on the flushed database."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()
