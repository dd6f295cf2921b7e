"""Money under concurrency, and what keys and ids promise: exactly N accepted for N credits, 256-bit keys
stored hashed, other keys' jobs invisible, ids unguessable."""

from __future__ import annotations

import base64
import io
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from harness.ledger import check_ledger
from shared import names
from shared.keys import KeyStore, hash_key
from tests.unit.gateway_app import make_app


def _image() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 30, 200)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture
def app(redis_url, tmp_path):
    return make_app(redis_url, tmp_path)


def test_100_concurrent_requests_against_10_credits_accept_exactly_10(app, rclient):
    key = KeyStore(rclient).create(10, "race")
    body = {"image": _image(), "coordinates": "[10,10]"}

    def call(_: int) -> int:
        return app.test_client().post("/v1/jobs", json=body, headers={"x-api-key": key}).status_code

    with ThreadPoolExecutor(max_workers=100) as pool:
        statuses = list(pool.map(call, range(100)))
    assert statuses.count(202) == 10 and statuses.count(406) == 90, sorted(set(statuses))
    assert KeyStore(rclient).credits.balance(hash_key(key)) == 0
    assert sum(1 for _ in rclient.scan_iter(match=names.job("*"))) == 10
    check_ledger(rclient, {key: 10})  # ten holds, one per live job, nothing else


def test_keys_are_256_bit_random_and_only_their_hash_is_stored(rclient):
    store = KeyStore(rclient)
    raws = {store.create(1) for _ in range(50)}
    assert len(raws) == 50
    for raw in raws:
        assert re.fullmatch(r"sk_[A-Za-z0-9_-]{43}", raw)  # 32 random bytes, base64url
        assert len(base64.urlsafe_b64decode(raw.removeprefix("sk_") + "=")) == 32
    stored = b" ".join(k + b" " + b" ".join(v for v in rclient.hgetall(k).values())
                       for k in rclient.scan_iter(match=names.api_key("*")))
    assert not any(raw.encode() in stored for raw in raws)


def test_another_keys_job_is_404_and_ids_are_unguessable(app, rclient):
    store = KeyStore(rclient)
    alice, mallory = store.create(5), store.create(5)
    client = app.test_client()
    ids = [client.post("/v1/jobs", json={"image": _image(), "coordinates": "[1,1]"},
                       headers={"x-api-key": alice}).get_json()["id"] for _ in range(3)]
    for job_id in ids:
        assert re.fullmatch(r"[0-9a-f]{43}", job_id)  # 11 hex digits of time, then 128 random bits
        for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/result"):
            r = client.get(path, headers={"x-api-key": mallory})
            assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
            assert client.get(path, headers={"x-api-key": alice}).status_code in (200, 409)
    assert len(set(ids)) == 3


def test_a_disabled_key_is_refused_at_once(app, rclient):
    store = KeyStore(rclient)
    key = store.create(5)
    client = app.test_client()
    assert client.get("/v1/credits", headers={"x-api-key": key}).status_code == 200
    store.disable(hash_key(key))
    for r in (client.get("/v1/credits", headers={"x-api-key": key}),
              client.post("/v1/jobs", json={"image": _image(), "coordinates": "[1,1]"}, headers={"x-api-key": key})):
        assert r.status_code == 401 and "disabled" in r.get_json()["error"]["message"]
    assert store.credits.balance(hash_key(key)) == 5
