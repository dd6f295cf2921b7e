"""The Python SDK on its own: webhook signatures, retries and Retry-After, error mapping, typed records.

Requests go over real HTTP to a small scripted server on loopback (`scripted`, in conftest.py); the end-to-end
tests use the real stack."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import requests
import samq_client
from PIL import Image
from samq_client import Client, verify_webhook
from samq_client.cli import main as cli_main
from samq_client.webhooks import sign

from harness.photos import ROCKET_JPG
from harness.procs import free_port
from worker.pipeline import Object
from worker.tasks import summary

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


@pytest.mark.parametrize(("status", "code", "cls", "parent"), [
    (422, "unsupported_image", samq_client.UnsupportedImage, samq_client.InvalidRequest),
    (409, "webhook_disabled", samq_client.WebhookDisabled, samq_client.Conflict),
    (503, "unavailable", samq_client.Unavailable, samq_client.NoCapacity),
    (503, "models_missing", samq_client.ModelsMissing, samq_client.NoCapacity),
    (405, "method_not_allowed", samq_client.MethodNotAllowed, samq_client.SamqError),
])
def test_codes_named_since_keep_the_class_their_status_gave_them(scripted, status, code, cls, parent):
    # Before these had names they were mapped by status: code catching the status's class still catches them.
    server = scripted((status, {}, {"error": {"code": code, "message": "m"}}))
    with pytest.raises(cls) as err:
        Client(server.url, "k", max_retries=0).get("j1")
    assert type(err.value) is cls and isinstance(err.value, parent) and err.value.code == code
    assert err.value.status == status and len(server.seen) == 1


class AnswerLost(requests.Session):
    """Sends each request for real, then loses the first answer as a read timeout does: the server acted."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def request(self, *args, **kwargs):
        response = super().request(*args, **kwargs)
        if not self.lost:
            self.lost += 1
            raise requests.ReadTimeout("read timed out (the answer was lost)")
        return response


CANCELED = {"id": "j1", "status": "canceled", "urls": {"self": "/v1/jobs/j1"}}
NOT_CANCELABLE = (409, {}, {"error": {"code": "not_cancelable", "message": "job j1 has already canceled"}})


def test_a_cancel_whose_answer_was_lost_is_a_success_not_not_cancelable(scripted):
    server = scripted((200, {}, CANCELED), NOT_CANCELABLE, (200, {}, CANCELED))
    job = Client(server.url, "k", backoff_s=0.01, session=AnswerLost()).cancel("j1")
    assert job.id == "j1" and job.status == "canceled"
    # The first cancel arrived (its answer was lost), the resend was refused, the job was read back.
    assert [(m, p) for m, p, *_ in server.seen] == [("POST", "/v1/jobs/j1/cancel"), ("POST", "/v1/jobs/j1/cancel"),
                                                   ("GET", "/v1/jobs/j1")]


def test_a_cancel_dropped_by_the_connection_is_read_back_too(scripted):
    server = scripted((0, {}, b""), NOT_CANCELABLE, (200, {}, CANCELED))
    assert Client(server.url, "k", backoff_s=0.01).cancel("j1").status == "canceled" and len(server.seen) == 3


def test_cancel_of_a_job_that_had_ended_raises_not_cancelable(scripted):
    # Refused at the first try: nothing was lost, so the 409 is the answer (no read-back).
    server = scripted(NOT_CANCELABLE)
    with pytest.raises(samq_client.NotCancelable):
        Client(server.url, "k").cancel("j1")
    assert len(server.seen) == 1
    # Refused after a lost answer, and the job had succeeded (ended before either cancel): still NotCancelable.
    server = scripted((0, {}, b""), NOT_CANCELABLE, (200, {}, {**CANCELED, "status": "succeeded"}))
    with pytest.raises(samq_client.NotCancelable):
        Client(server.url, "k", backoff_s=0.01).cancel("j1")
    assert [m for m, *_ in server.seen] == ["POST", "POST", "GET"]


@pytest.mark.parametrize("mask_score,stability", [(0.875, None), (None, None), (None, 0.9)])
def test_objects_are_read_as_the_worker_writes_them(mask_score, stability):
    mask = np.zeros((8, 8), dtype=bool)
    mask[2:5, 1:4] = True
    shown = summary(Object("boy", 0.5, mask, [1.0, 2.0, 4.0, 5.0], mask_score=mask_score, stability_score=stability))
    fields = {f.name for f in dataclasses.fields(samq_client.SegmentObject)}
    assert fields == {*shown, "mask_score", "stability_score"}
    job = samq_client.Job.from_dict({"id": "j1", "status": "succeeded", "objects": [shown]})
    assert job.objects == [samq_client.SegmentObject("boy", 0.5, [1.0, 2.0, 4.0, 5.0], 9, mask_score, stability)]


def test_the_package_ships_py_typed():
    package = Path(samq_client.__file__).parent
    assert (package / "py.typed").is_file()
    project = tomllib.loads((package.parent / "pyproject.toml").read_text())
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["samq_client"]


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
    # The server's cursor is the offset of the next page, an int (null on the last page).
    page1 = {"id": "b1", "total": 3, "counts": {"succeeded": 2, "running": 1}, "jobs": [
        {"id": "j1", "status": "succeeded"}, {"id": "j2", "status": "succeeded"}], "next_cursor": 2}
    page2 = {"id": "b1", "total": 3, "counts": {"succeeded": 2, "running": 1}, "jobs": [
        {"id": "j3", "status": "running"}], "next_cursor": None}
    server = scripted((200, {}, page1), (200, {}, page2))
    client = Client(server.url, "k")
    batch = client.batch_status("b1")
    assert [j.id for j in batch.jobs] == ["j1", "j2", "j3"] and not batch.done
    assert batch.counts.finished == 2 and server.seen[1][1] == "/v1/batches/b1?cursor=2&limit=1000"
    assert batch.next_cursor is None and samq_client.Batch.from_dict(page1).next_cursor == 2


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
