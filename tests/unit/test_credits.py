"""API keys and worker liveness, against a real Redis: keys are stored only as their SHA-256, AUTHENTICATE
reads the key, its balance and this minute's request count in one Lua call (disabled and unknown keys count
nothing), and a worker is alive while its last heartbeat is recent. (The credit and job-state scripts are tested
in test_jobs.py, test_leases.py and test_money_and_keys.py.)"""

import pytest

from shared import names
from shared.keys import KeyStore, hash_key


@pytest.fixture
def keys(rclient):
    return KeyStore(rclient)


def test_keys_are_stored_hashed_never_raw(keys, rclient):
    raw = keys.create(10, "alice")
    assert raw.startswith("sk_")
    stored = b" ".join(k + b" " + b" ".join(rclient.hgetall(k).values()) for k in rclient.keys("samq:key:*"))
    assert raw.encode() not in stored and hash_key(raw).encode() in stored
    found, _ = keys.authenticate(raw, None)  # the gateway's lookup of a raw key
    assert found.credits == 10 and found.name == "alice" and found.key_id == hash_key(raw)
    assert keys.authenticate(raw + "x", None) == (None, 0)


def test_workers_are_alive_for_three_heartbeats(rclient):
    import time

    from shared import workers

    workers.announce(rclient, "a@host")
    rclient.zadd(names.WORKERS, {"old@host": time.time() - 10})
    assert workers.alive(rclient, heartbeat_s=1.0) == ["a@host"]
    assert sorted(workers.alive(rclient, heartbeat_s=5.0)) == ["a@host", "old@host"]
    workers.retire(rclient, "a@host")
    assert workers.alive(rclient, heartbeat_s=1.0) == []


def test_authenticate_looks_up_and_counts_in_one_step(keys, rclient):
    raw = keys.create(7, "bob")
    key, count = keys.authenticate(raw, rate_window=100)
    assert (key.name, key.credits, key.disabled, count) == ("bob", 7, False, 1)
    assert keys.authenticate(raw, rate_window=100)[1] == 2
    assert keys.authenticate(raw, rate_window=101)[1] == 1  # a new minute starts again
    assert 0 < rclient.ttl(names.rate(hash_key(raw), 100)) <= 120
    assert keys.authenticate(raw, rate_window=None)[1] == 0  # no limit: nothing counted
    assert keys.authenticate(raw + "x", rate_window=100) == (None, 0)
    assert not rclient.exists(names.rate(hash_key(raw + "x"), 100))  # unknown keys leave no counter
    keys.disable(hash_key(raw))
    key, count = keys.authenticate(raw, rate_window=100)
    assert key.disabled and count == 0
