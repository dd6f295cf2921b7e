"""Log lines: JSON objects carrying request_id and job_id when bound; readable text otherwise."""

from __future__ import annotations

import io
import json
import logging
import os
import time
from datetime import datetime

import pytest

from gateway.app import create_app
from shared import logs
from shared.settings import Settings


@pytest.fixture
def captured():
    """What samq's handler writes, for a given format; restores logging afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()

    def use(fmt: str) -> io.StringIO:
        logs.setup(fmt)
        root.handlers[0].setStream(stream)
        return stream

    yield use
    root.handlers[:], root.level = saved[0], saved[1]


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_bound_ids(captured):
    stream = captured("json")
    log = logging.getLogger("samq.test")
    log.info("outside")
    with logs.bound(request_id="req-1"):
        with logs.bound(job_id="job-9"):
            log.warning("inside %s", "both", extra={"attempt": 2})
        log.info("request only")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    out = lines(stream)
    assert [o["message"] for o in out] == ["outside", "inside both", "request only", "failed"]
    assert "request_id" not in out[0] and "job_id" not in out[0]
    assert out[1]["request_id"] == "req-1" and out[1]["job_id"] == "job-9" and out[1]["attempt"] == 2
    assert out[1]["level"] == "warning" and out[1]["logger"] == "samq.test" and out[1]["time"].endswith("Z")
    assert out[2]["request_id"] == "req-1" and "job_id" not in out[2]
    assert "request_id" not in out[3] and "ValueError: boom" in out[3]["exc_info"]


def test_text_lines_are_readable(captured):
    stream = captured("text")
    with logs.bound(request_id="req-2", job_id="job-3"):
        logging.getLogger("samq.test").info("hello")
    line = stream.getvalue().strip()
    assert " INFO " in line and "samq.test: hello" in line and line.endswith("request_id=req-2 job_id=job-3")


def test_each_request_logs_one_access_line_with_its_ids(captured, redis_url, tmp_path):
    stream = captured("json")
    client = create_app(Settings(redis_url=redis_url, storage_url=f"file://{tmp_path}")).test_client()
    before, started = time.time(), time.perf_counter()
    r = client.get("/v1/jobs/abc", headers={"x-request-id": "req-7"})
    took_ms, after = (time.perf_counter() - started) * 1000, time.time()
    client.get("/healthz")
    access = [o for o in lines(stream) if o["logger"] == "samq.access"]
    assert len(access) == 2
    first = access[0]
    duration = first.pop("duration_ms")
    assert 0 < duration <= took_ms + 0.05  # measured inside the call (rounded to 0.1 ms)
    logged_at = datetime.fromisoformat(first.pop("time").replace("Z", "+00:00")).timestamp()
    assert before - 0.001 <= logged_at <= after  # stamped in milliseconds, while the request ran
    assert first == {
        "level": "info", "logger": "samq.access", "message": f"GET /v1/jobs/abc 401 {duration:.1f}ms",
        "pid": os.getpid(), "method": "GET", "path": "/v1/jobs/abc", "route": "/v1/jobs/<job_id>",
        "job_id": "abc", "status": 401, "request_id": "req-7",
    }
    assert r.headers["x-request-id"] == "req-7"
    # The next request on the same thread does not inherit the first one's ids.
    assert access[1]["request_id"] not in ("req-7", None) and "job_id" not in access[1]
