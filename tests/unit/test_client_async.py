"""The SDK's shared core and AsyncClient on their own: both clients have the same methods; the retry policy as the
flows decide it (no I/O: the test answers each step); AsyncClient over real HTTP to the scripted loopback server
(`scripted`, in conftest.py) for retries, Retry-After, error mapping and the cancel whose answer was lost. The
end-to-end tests are tests/integration/test_client_async.py."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from typing import Any

import httpx
import pytest
import samq_client
from samq_client import AsyncClient, Client, _core

from harness.photos import ROCKET_JPG
from harness.procs import free_port
from tests.client_transports import LosesAnswers

JOB = {"id": "j1", "status": "queued", "urls": {"self": "/v1/jobs/j1"}}
CANCELED = {"id": "j1", "status": "canceled", "urls": {"self": "/v1/jobs/j1"}}
NOT_CANCELABLE = (409, {}, {"error": {"code": "not_cancelable", "message": "job j1 has already canceled"}})


def _public(cls: type) -> dict[str, Any]:
    return {name: getattr(cls, name) for name in dir(cls) if not name.startswith("_")}


def test_both_clients_have_the_same_methods_with_the_same_arguments():
    sync, asynchronous = _public(Client), _public(AsyncClient)
    assert set(sync) == set(asynchronous)
    assert {"submit", "wait", "get", "cancel", "segment", "submit_batch", "wait_batch", "request"} <= set(sync)
    for name, method in sync.items():
        other = asynchronous[name]
        if name == "verify_webhook":  # pure: the same function on both
            assert method is other
            continue
        assert not inspect.iscoroutinefunction(method) and inspect.iscoroutinefunction(other), name
        ours, theirs = inspect.signature(method), inspect.signature(other)
        assert list(ours.parameters.values()) == list(theirs.parameters.values()), name
        if name not in ("close", "request"):  # request answers requests' or httpx's response
            assert ours.return_annotation == theirs.return_annotation != inspect.Signature.empty, name
        assert method.__doc__ == other.__doc__ and method.__doc__, name


class Answer:
    """A response as a flow reads it."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.status_code, self.headers, self.reason = status, headers or {}, "R"
        self.content = json.dumps(body).encode()
        self.text = self.content.decode()

    def json(self) -> Any:
        return json.loads(self.content)


def play(flow: _core.Flow[Any], *answers: Answer | _core.TransportFailure) -> tuple[list[Any], Any]:
    """Run a flow with no I/O: each Call gets the next answer (a failure is thrown in), each Sleep is only noted.
    The steps taken and what the flow returned (or raised)."""
    steps, queue = _core.Stepper(flow), list(answers)
    taken: list[Any] = []
    try:
        while (step := steps.next()) is not None:
            taken.append(step if isinstance(step, _core.Sleep) else (step.method, step.url))
            if isinstance(step, _core.Call):
                answer = queue.pop(0)
                steps.value, steps.error = (None, answer) if isinstance(answer, Exception) else (answer, None)
    except samq_client.SamqError as exc:
        return taken, exc
    assert not queue, "answers left over"
    return taken, steps.result


def lost(maybe_sent: bool) -> _core.TransportFailure:
    return _core.TransportFailure(OSError("no answer"), maybe_sent)


CONFIG = _core.Base("http://api", "k", backoff_s=0.5, max_retries=3)


def test_the_policy_waits_what_retry_after_says_then_resends():
    taken, job = play(_core.get(CONFIG, "j1"), Answer(429, {"error": {"code": "rate_limited"}}, {"Retry-After": "2"}),
                      Answer(200, JOB))
    assert taken == [("GET", "http://api/v1/jobs/j1"), _core.Sleep(2.0), ("GET", "http://api/v1/jobs/j1")]
    assert job.id == "j1"


def test_a_call_that_may_have_arrived_is_resent_only_when_idempotent():
    # The drop-in has no Idempotency-Key: an answer lost after sending ends it; a refused connection is retried.
    taken, error = play(_core.sam_v2_image(CONFIG, b"x", prompt="a"), lost(maybe_sent=True))
    assert len(taken) == 1 and isinstance(error, samq_client.ConnectionFailed)
    taken, error = play(_core.sam_v2_image(CONFIG, b"x", prompt="a"), lost(False), Answer(500, {}))
    assert [type(s) for s in taken] == [tuple, _core.Sleep, tuple] and 0.25 <= taken[1].seconds <= 0.5
    assert isinstance(error, samq_client.ServerError) and error.status == 500
    # The backoff doubles with each try (with jitter: between half and all of it), until the tries are spent.
    taken, error = play(_core.credits(CONFIG), *[lost(True)] * 4)
    sleeps = [t.seconds for t in taken if isinstance(t, _core.Sleep)]
    assert len(sleeps) == 3 and all(0.25 * 2**i <= s <= 0.5 * 2**i for i, s in enumerate(sleeps)), sleeps
    assert isinstance(error, samq_client.ConnectionFailed) and len(taken) - len(sleeps) == 4


def test_a_cancel_refused_after_a_lost_answer_is_read_back_and_a_first_refusal_is_not_resent():
    post, get = ("POST", "http://api/v1/jobs/j1/cancel"), ("GET", "http://api/v1/jobs/j1")
    taken, job = play(_core.cancel(CONFIG, "j1"), lost(True), Answer(409, NOT_CANCELABLE[2]), Answer(200, CANCELED))
    assert [t for t in taken if isinstance(t, tuple)] == [post, post, get] and job.status == "canceled"
    taken, error = play(_core.cancel(CONFIG, "j1"), Answer(409, NOT_CANCELABLE[2]))
    assert taken == [post] and isinstance(error, samq_client.NotCancelable)


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_async_submit_retries_429_after_retry_after_with_the_same_idempotency_key(scripted):
    server = scripted((429, {"Retry-After": "1"}, {"error": {"code": "rate_limited", "message": "slow down"}}),
                      (503, {}, {"error": {"code": "no_capacity", "message": "busy"}}), (202, {}, JOB))

    async def main() -> samq_client.Job:
        async with AsyncClient(server.url, "sk_test", backoff_s=0.05) as client:
            return await client.submit(ROCKET_JPG, prompt="rocket", points=[(1, 2)], priority="low")

    assert _run(main()).id == "j1"
    (_, path, h1, body, t1), (_, _, h2, _, t2), (_, _, h3, _, _) = server.seen
    assert path == "/v1/jobs" and h1["x-api-key"] == "sk_test"
    assert h1["Idempotency-Key"] == h2["Idempotency-Key"] == h3["Idempotency-Key"]
    assert t2 - t1 >= 0.95
    sent = json.loads(body)
    assert sent["coordinates"] == [[1, 2]] and sent["prompt"] == "rocket" and sent["priority"] == "low"


@pytest.mark.parametrize(("status", "code", "cls"), [
    (400, "invalid_request", samq_client.InvalidRequest), (400, "url_not_allowed", samq_client.UrlNotAllowed),
    (401, "unauthorized", samq_client.Unauthorized), (409, "no_result", samq_client.NoResult),
    (503, "models_missing", samq_client.ModelsMissing), (418, "teapot", samq_client.SamqError),
])
def test_async_error_codes_become_the_same_named_exceptions(scripted, status, code, cls):
    server = scripted((status, {"x-request-id": "r1"}, {"error": {"code": code, "message": "m"}}))
    with pytest.raises(cls) as err:
        _run(AsyncClient(server.url, "k", max_retries=0).get("j1"))
    assert type(err.value) is cls and (err.value.code, err.value.status, err.value.request_id) == (code, status, "r1")


def test_async_cancel_whose_answer_was_lost_is_a_success_not_not_cancelable(scripted):
    server = scripted((200, {}, CANCELED), NOT_CANCELABLE, (200, {}, CANCELED))
    transport = LosesAnswers(lambda request: "cancel" if request.url.path.endswith("/cancel") else None)

    async def main() -> samq_client.Job:
        async with AsyncClient(server.url, "k", backoff_s=0.01,
                               http_client=httpx.AsyncClient(transport=transport)) as client:
            return await client.cancel("j1")

    assert _run(main()).status == "canceled"
    assert [(m, p) for m, p, *_ in server.seen] == transport.seen == [
        ("POST", "/v1/jobs/j1/cancel"), ("POST", "/v1/jobs/j1/cancel"), ("GET", "/v1/jobs/j1")]


def test_async_drop_in_is_never_resent_once_it_may_have_arrived_but_is_when_unreachable(scripted):
    server = scripted((0, {}, b""))  # the server hangs up without answering
    with pytest.raises(samq_client.ConnectionFailed):
        _run(AsyncClient(server.url, "k", backoff_s=0.01).sam_v2_image(ROCKET_JPG, prompt="rocket"))
    assert len(server.seen) == 1 and "Idempotency-Key" not in server.seen[0][2]
    start = time.monotonic()
    with pytest.raises(samq_client.ConnectionFailed):
        _run(AsyncClient(f"http://127.0.0.1:{free_port()}", "k", max_retries=2, backoff_s=0.2).sam_v2_image(b"x"))
    assert time.monotonic() - start >= 0.2  # refused connections: retried, with backoff


def test_async_batch_status_reads_every_page_by_its_int_cursor(scripted):
    page1 = {"id": "b1", "total": 3, "counts": {"succeeded": 2, "running": 1}, "jobs": [
        {"id": "j1", "status": "succeeded"}, {"id": "j2", "status": "succeeded"}], "next_cursor": 2}
    page2 = {**page1, "jobs": [{"id": "j3", "status": "running"}], "next_cursor": None}
    server = scripted((200, {}, page1), (200, {}, page2))
    batch = _run(AsyncClient(server.url, "k").batch_status("b1"))
    assert [j.id for j in batch.jobs] == ["j1", "j2", "j3"] and not batch.done and batch.next_cursor is None
    assert server.seen[1][1] == "/v1/batches/b1?cursor=2&limit=1000"
