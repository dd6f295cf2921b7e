"""The Python SDK on its own: webhook signatures, retries and Retry-After, error mapping, typed records.

Requests go over real HTTP to a small scripted server on loopback (`scripted`, in conftest.py); the end-to-end
tests use the real stack."""

from __future__ import annotations

import base64
import io
import json
import time

import pytest
import samq_client
from PIL import Image
from samq_client import Client, verify_webhook
from samq_client.cli import main as cli_main
from samq_client.webhooks import sign

from tests.helpers import ROCKET_JPG, free_port

SECRET = "whsec_" + base64.b64encode(b"a secret of thirty-two bytes....").decode()


JOB = {"id": "j1", "status": "queued", "urls": {"self": "/v1/jobs/j1"}, "new_field": 1}


def test_submit_retries_429_after_retry_after_with_the_same_idempotency_key(scripted):
    server = scripted((429, {"Retry-After": "1"}, {"error": {"code": "rate_limited", "message": "slow down"}}),
                      (503, {}, {"error": {"code": "no_capacity", "message": "busy"}}),
                      (202, {}, JOB))
    client = Client(server.url, "sk_test", backoff_s=0.05)
    job = client.submit(ROCKET_JPG, prompt="rocket", points=[(1, 2)], outputs=["json"], priority="low")
    assert job.id == "j1" and job.status == "queued" and job.raw["new_field"] == 1
    (_, path, h1, body, t1), (_, _, h2, _, t2), (_, _, h3, _, _) = server.seen
    assert path == "/v1/jobs" and h1["x-api-key"] == "sk_test"
    assert h1["Idempotency-Key"] == h2["Idempotency-Key"] == h3["Idempotency-Key"]
    assert t2 - t1 >= 0.95  # Retry-After honoured
    sent = json.loads(body)
    assert base64.b64decode(sent["image"]) == ROCKET_JPG.read_bytes()
    assert sent["coordinates"] == [[1, 2]] and sent["prompt"] == "rocket" and sent["priority"] == "low"


def test_gives_up_with_the_named_error_after_the_retries(scripted):
    busy = (503, {"Retry-After": "0"}, {"error": {"code": "no_capacity", "message": "no worker"}})
    server = scripted(busy, busy, busy)
    with pytest.raises(samq_client.NoCapacity) as err:
        Client(server.url, "k", max_retries=2).credits()
    assert err.value.status == 503 and err.value.message == "no worker" and len(server.seen) == 3


@pytest.mark.parametrize(("status", "code", "cls"), [
    (400, "invalid_request", samq_client.InvalidRequest), (400, "url_not_allowed", samq_client.UrlNotAllowed),
    (401, "unauthorized", samq_client.Unauthorized), (404, "not_found", samq_client.NotFound),
    (406, "insufficient_credits", samq_client.InsufficientCredits), (409, "no_result", samq_client.NoResult),
    (409, "not_finished", samq_client.NotFinished), (413, "too_large", samq_client.TooLarge),
    (422, "undecodable_image", samq_client.UndecodableImage), (422, "fetch_failed", samq_client.FetchFailed),
    (500, "internal_error", samq_client.ServerError), (418, "teapot", samq_client.SamqError),
])
def test_error_codes_become_named_exceptions(scripted, status, code, cls):
    server = scripted((status, {}, {"error": {"code": code, "message": "m"}}))
    with pytest.raises(cls) as err:
        Client(server.url, "k").get("j1")
    assert type(err.value) is cls and err.value.code == code and err.value.status == status


def test_connection_errors_are_retried_then_named():
    start = time.monotonic()
    with pytest.raises(samq_client.ConnectionFailed):
        Client(f"http://127.0.0.1:{free_port()}", "k", max_retries=2, backoff_s=0.2).credits()
    assert time.monotonic() - start >= 0.2  # it backed off between tries


def test_url_and_key_come_from_the_environment(scripted, monkeypatch):
    server = scripted((200, {}, {"credits": 7, "name": "alice"}))
    monkeypatch.setenv("SAMQ_URL", server.url + "/")
    monkeypatch.setenv("SAMQ_API_KEY", "sk_env")
    with Client() as client:
        assert client.credits() == samq_client.Credits(7, "alice")
    assert server.seen[0][2]["x-api-key"] == "sk_env"


def test_webhook_secret(scripted):
    server = scripted((200, {}, {"secret": SECRET}))
    assert Client(server.url, "k").webhook_secret() == SECRET and server.seen[0][1] == "/v1/webhooks/secret"


def test_images_are_encoded_from_paths_bytes_pil_and_urls():
    raw = ROCKET_JPG.read_bytes()
    assert samq_client.encode_image(str(ROCKET_JPG)) == samq_client.encode_image(raw) == base64.b64encode(raw).decode()
    png = base64.b64decode(samq_client.encode_image(Image.open(ROCKET_JPG)))
    assert Image.open(io.BytesIO(png)).size == (640, 427)
    assert samq_client.encode_image(" https://example.com/a.jpg") == "https://example.com/a.jpg"
    with pytest.raises(TypeError):
        samq_client.encode_image(42)


def test_batch_status_reads_every_page(scripted):
    page1 = {"id": "b1", "total": 3, "counts": {"succeeded": 2, "running": 1}, "jobs": [
        {"id": "j1", "status": "succeeded"}, {"id": "j2", "status": "succeeded"}], "next_cursor": "c2"}
    page2 = {"id": "b1", "total": 3, "counts": {"succeeded": 2, "running": 1}, "jobs": [
        {"id": "j3", "status": "running"}]}
    server = scripted((200, {}, page1), (200, {}, page2))
    batch = Client(server.url, "k").batch_status("b1")
    assert [j.id for j in batch.jobs] == ["j1", "j2", "j3"] and not batch.done
    assert batch.counts.finished == 2 and server.seen[1][1] == "/v1/batches/b1?cursor=c2&limit=1000"


def _headers(body: bytes, stamp: int, signature: str) -> dict[str, str]:
    return {"Webhook-Id": "msg_1", "Webhook-Timestamp": str(stamp), "Webhook-Signature": signature}


def test_verify_webhook_accepts_a_good_signature_among_several():
    body = json.dumps({"type": "job.succeeded", "job_id": "j1"}).encode()
    now = int(time.time())
    other = "whsec_" + base64.b64encode(b"another secret").decode()
    signatures = f"{sign(other, 'msg_1', now, body)} v1a,xyz {sign(SECRET, 'msg_1', now, body)}"
    assert verify_webhook(SECRET, _headers(body, now, signatures), body)["job_id"] == "j1"
    assert Client.verify_webhook(SECRET, _headers(body, now, signatures), body.decode())["type"] == "job.succeeded"


@pytest.mark.parametrize("case", ["tampered", "old", "future", "wrong_secret", "missing", "bad_stamp"])
def test_verify_webhook_refuses(case):
    body, now = b'{"job_id": "j1"}', int(time.time())
    stamp = {"old": now - 301, "future": now + 301}.get(case, now)
    secret = "whsec_" + base64.b64encode(b"wrong").decode() if case == "wrong_secret" else SECRET
    headers = _headers(body, stamp, sign(secret, "msg_1", stamp, body))
    if case == "missing":
        del headers["Webhook-Signature"]
    if case == "bad_stamp":
        headers["Webhook-Timestamp"] = "soon"
    with pytest.raises(samq_client.WebhookVerificationError):
        verify_webhook(SECRET, headers, body + (b" " if case == "tampered" else b""))


def test_the_drop_in_is_never_resent_once_it_may_have_arrived(scripted):
    server = scripted((0, {}, b""), (200, {"content-type": "image/jpeg"}, b"jpeg"))
    client = Client(server.url, "k", backoff_s=0.01)
    with pytest.raises(samq_client.ConnectionFailed):
        client.sam_v2_image(ROCKET_JPG, prompt="rocket")  # it takes no Idempotency-Key: a resend could charge twice
    assert len(server.seen) == 1 and "Idempotency-Key" not in server.seen[0][2]
    assert client.sam_v2_image(ROCKET_JPG, prompt="rocket") == b"jpeg"
    sent = json.loads(server.seen[1][3])
    assert sent["prompt"] == "rocket" and sent["overlay_mask"] is True and sent["base64"] is False
    # A submit that lost its answer is resent with the same key: the server replays, nothing is charged twice.
    server = scripted((0, {}, b""), (202, {}, JOB))
    assert Client(server.url, "k", backoff_s=0.01).submit(ROCKET_JPG, prompt="x").id == "j1"
    assert server.seen[0][2]["Idempotency-Key"] == server.seen[1][2]["Idempotency-Key"]


def test_the_drop_in_is_retried_when_the_server_could_not_be_reached():
    start = time.monotonic()
    with pytest.raises(samq_client.ConnectionFailed):
        Client(f"http://127.0.0.1:{free_port()}", "k", max_retries=2, backoff_s=0.2).sam_v2_image(b"x", prompt="a")
    assert time.monotonic() - start >= 0.2


def test_cli_prints_api_errors_as_they_are(scripted, capsys):
    server = scripted((404, {}, {"error": {"code": "not_found", "message": "no job [bold]x[/bold] in items[5]"}}))
    assert cli_main(["--url", server.url, "--api-key", "k", "jobs", "show", "x"]) == 1
    assert "not_found: no job [bold]x[/bold] in items[5]" in capsys.readouterr().err.replace("\n", "")
