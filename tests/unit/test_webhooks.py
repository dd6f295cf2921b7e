"""Webhook secrets, signatures (checked by the standardwebhooks package), the outbox and retry sets, the routes."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from pathlib import Path

import pydantic
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from gateway.app import create_app
from shared import names, outbox, webhooks
from shared.celery_apps import make_webhook_celery
from shared.errors import UrlNotAllowed
from shared.keys import KeyStore, hash_key
from shared.settings import Settings
from worker.delivery import retry_after

API_DOC = (Path(__file__).parents[2] / "docs" / "API.md").read_text()
BROKER_QUEUE = names.WEBHOOK_BROKER_PREFIX + names.QUEUE_WEBHOOKS  # where kombu keeps the queue's messages


@pytest.fixture
def settings(redis_url, tmp_path) -> Settings:
    return Settings(redis_url=redis_url, storage_url=f"file://{tmp_path}")


@pytest.fixture
def api(settings):
    return create_app(settings).test_client()


@pytest.fixture
def raw_key(rclient) -> str:
    return KeyStore(rclient).create(10, "hooks")


def task_args(message: bytes) -> list:
    """The positional arguments of a Celery message as kombu stores it in Redis."""
    return json.loads(base64.b64decode(json.loads(message)["body"]))[0]


def signed_headers(secrets_: list[str], body: bytes, msg_id: str = "msg_1") -> dict[str, str]:
    now = int(time.time())
    return {"webhook-id": msg_id, "webhook-timestamp": str(now),
            "webhook-signature": webhooks.sign(secrets_, msg_id, now, body)}


def test_signatures_verify_under_standardwebhooks_and_fail_when_tampered():
    secret, other = webhooks.new_secret(), webhooks.new_secret()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{32}", secret)
    body = b'{"type":"job.succeeded"}'
    assert Webhook(secret).verify(body, signed_headers([secret], body)) == {"type": "job.succeeded"}
    both = signed_headers([secret, other], body)
    assert Webhook(secret).verify(body, both) == Webhook(other).verify(body, both)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", signed_headers([secret], body))
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(body, both)


def test_secret_route_is_stable_and_rotation_overlaps_for_a_day(api, rclient, raw_key):
    headers = {"x-api-key": raw_key}
    first = api.get("/v1/webhooks/secret", headers=headers).get_json()["secret"]
    assert api.get("/v1/webhooks/secret", headers=headers).get_json()["secret"] == first
    key_id = hash_key(raw_key)
    webhooks.disable_url(rclient, key_id, "https://example.com/gone")
    rotated = api.post("/v1/webhooks/secret/rotate", headers=headers).get_json()
    assert rotated == {"secret": rotated["secret"], "previous_valid_for_s": 86400} and rotated["secret"] != first
    assert webhooks.signing_secrets(rclient, key_id) == [rotated["secret"], first]
    assert webhooks.disabled_urls(rclient, key_id) == {}  # rotating enables disabled URLs again
    rclient.hset(names.api_key(key_id), "webhook_secret_prev_until", time.time() - 1)
    assert webhooks.signing_secrets(rclient, key_id) == [rotated["secret"]]
    assert api.get("/v1/webhooks/secret").status_code == 401


def test_enable_and_list_disabled_urls(api, rclient, raw_key):
    headers = {"x-api-key": raw_key}
    webhooks.disable_url(rclient, hash_key(raw_key), "https://example.com/gone")
    listed = api.get("/v1/webhooks/disabled", headers=headers).get_json()["urls"]
    assert [u["url"] for u in listed] == ["https://example.com/gone"]
    answer = api.post("/v1/webhooks/enable", json={"url": "https://example.com/gone"}, headers=headers)
    assert answer.get_json() == {"url": "https://example.com/gone", "enabled": True, "was_disabled": True}
    assert api.get("/v1/webhooks/disabled", headers=headers).get_json()["urls"] == []
    bad = api.post("/v1/webhooks/enable", json={"link": "x"}, headers=headers)
    assert bad.status_code == 400 and "'url'" in bad.get_json()["error"]["message"]


def test_deliveries_of_unknown_or_foreign_jobs_are_404(api, rclient, raw_key):
    other = KeyStore(rclient).create(1)
    rclient.hset(names.job("j1"), mapping={"id": "j1", "status": "succeeded", "key_id": hash_key(other)})
    for path in ("/v1/jobs/j1/deliveries", "/v1/jobs/nope/deliveries"):
        assert api.get(path, headers={"x-api-key": raw_key}).status_code == 404
    assert api.post("/v1/jobs/j1/deliveries/1/redeliver", headers={"x-api-key": raw_key}).status_code == 404
    answer = api.post("/v1/jobs/j1/deliveries/1/redeliver", headers={"x-api-key": other})
    assert answer.status_code == 404 and "no delivery 1" in answer.get_json()["error"]["message"]


def test_publish_hands_events_to_the_webhook_keyspace_and_empties_the_outbox(settings, rclient):
    app = make_webhook_celery(settings)
    events = [json.dumps({"id": f"msg_{i}", "type": "job.succeeded"}) for i in range(2)]
    rclient.zadd(names.OUTBOX, {e: time.time() for e in events})
    outbox.publish(app, rclient, events)
    assert rclient.zcard(names.OUTBOX) == 0
    sent = [task_args(m) for m in rclient.lrange(BROKER_QUEUE, 0, -1)]
    assert sorted(sent) == sorted([e, 1] for e in events)
    assert not rclient.exists(names.QUEUE_WEBHOOKS)  # nothing in the GPU tasks' keyspace


def test_sweep_takes_only_stranded_events_once_even_when_two_workers_sweep(settings, rclient):
    app = make_webhook_celery(settings)
    rclient.zadd(names.OUTBOX, {"old": time.time() - 60, "fresh": time.time()})
    counts: list[int] = []
    barrier = threading.Barrier(2)

    def sweep() -> None:
        barrier.wait()
        counts.append(outbox.sweep(app, rclient))

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(counts) == [0, 1] and rclient.llen(BROKER_QUEUE) == 1
    assert [m.decode() for m in rclient.zrange(names.OUTBOX, 0, -1)] == ["fresh"]


def test_a_claimed_entry_whose_taker_died_comes_back_after_its_lease(settings, rclient):
    rclient.zadd(names.WEBHOOK_RETRIES, {json.dumps({"event": "e", "attempt": 2}): time.time() - 1})
    taken = outbox._claim(rclient, names.WEBHOOK_RETRIES, time.time(), 10)  # ...and its taker dies here
    assert len(taken) == 1 and outbox._claim(rclient, names.WEBHOOK_RETRIES, time.time(), 10) == []
    assert outbox._claim(rclient, names.WEBHOOK_RETRIES, time.time() + outbox.LEASE_S + 1, 10) == taken
    assert outbox.release_due(make_webhook_celery(settings), rclient) == 0  # leased again just above
    rclient.zadd(names.WEBHOOK_RETRIES, {taken[0]: time.time() - 1})
    assert outbox.release_due(make_webhook_celery(settings), rclient) == 1
    assert rclient.zcard(names.WEBHOOK_RETRIES) == 0 and rclient.llen(BROKER_QUEUE) == 1


def test_webhook_urls_pass_the_ssrf_guard_naming_the_field(settings):
    with pytest.raises(UrlNotAllowed, match="webhook_url"):
        webhooks.check_webhook_url("http://169.254.169.254/latest", settings)
    allowed = Settings(webhook_allow_hosts="127.0.0.1:9000")
    assert webhooks.check_webhook_url("http://127.0.0.1:9000/hook", allowed).address == "127.0.0.1"


@pytest.mark.parametrize("value", ["", "5,10", "0,x", "0,-1"])
def test_retry_schedule_must_be_seconds_starting_at_zero(value):
    with pytest.raises(pydantic.ValidationError):
        Settings(webhook_retry_schedule_s=value)


def test_retry_schedule_default_is_the_spec_schedule():
    assert Settings().webhook_schedule == (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)


def test_retry_after_reads_seconds_and_dates():
    assert retry_after("120") == 120 and retry_after(None) == 0 and retry_after("soon") == 0
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 55 < retry_after(later) <= 60
    assert retry_after("999999999") == 86400


def test_the_documented_receiver_example_accepts_our_deliveries():
    code = API_DOC.split("A receiver verifies with", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    secret = webhooks.new_secret()
    scope: dict = {"__name__": "documented_receiver"}
    exec(code.replace("whsec_...", secret), scope)  # noqa: S102 (our own docs/API.md)
    client = scope["app"].test_client()
    body = json.dumps({"type": "job.succeeded", "data": {"id": "j", "status": "succeeded"}}).encode()
    assert client.post("/samq", data=body, headers=signed_headers([secret], body)).status_code == 204
    tampered = client.post("/samq", data=body + b" ", headers=signed_headers([secret], body))
    assert tampered.status_code == 400


def test_the_delivery_log_lives_as_long_as_its_job(rclient):
    rclient.hset(names.job("j"), "status", "running")  # no TTL until it ends
    attempt = {"attempt": 1, "event": "msg_1", "status": 200}
    assert webhooks.log_attempt(rclient, names.job("j"), "j", attempt, retention_s=500) == 1
    assert 490 < rclient.ttl(names.deliveries("j")) <= 500
    rclient.expire(names.job("j"), 100)  # it ended: retention from now
    assert webhooks.log_attempt(rclient, names.job("j"), "j", {**attempt, "attempt": 2}, retention_s=500) == 2
    assert 90 < rclient.ttl(names.deliveries("j")) <= 100
    assert [(d["n"], d["attempt"]) for d in webhooks.deliveries(rclient, "j")] == [(1, 1), (2, 2)]
