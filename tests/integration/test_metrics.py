"""Metrics that move when requests and jobs happen, on the real stack (two gunicorn processes, one worker)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from gateway.supervisor import gateway_command
from harness.photos import ROCKET_JPG, b64
from harness.procs import free_port, start, stop, wait_until
from harness.stack import Stack
from shared import names

HEALTHZ = ("samq_requests_total", (("method", "GET"), ("route", "/healthz"), ("status", "200")))


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text as {(sample name, sorted labels): value}."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def gateway_metrics(stack) -> dict:
    return samples(requests.get(stack.url + "/metrics", timeout=10).text)


def healthz_per_process(metrics_dir: Path, tmp: Path) -> dict[str, float]:
    """How many /healthz each gunicorn process answered, read from its own counter file alone."""
    out = {}
    for db in metrics_dir.glob("counter_*.db"):
        alone = tmp / db.stem
        alone.mkdir(parents=True)
        shutil.copy(db, alone / db.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        out[db.stem] = samples(generate_latest(registry).decode()).get(HEALTHZ, 0)
    return out


def delta(after: dict, before: dict, key: tuple) -> float:
    return after.get(key, 0) - before.get(key, 0)


def _healthz(stack, n: int) -> None:
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda _: requests.get(stack.url + "/healthz", timeout=10).status_code, range(n))) \
            == [200] * n


def test_request_counts_add_up_across_gunicorn_processes(stack, tmp_path):
    metrics_dir = Path(stack.env["SAMQ_METRICS_DIR"])
    assert stack.settings.gateway_workers == 2
    before, per_before = gateway_metrics(stack), healthz_per_process(metrics_dir, tmp_path / "before")
    _healthz(stack, 16)
    served = healthz_per_process(metrics_dir, tmp_path / "first")
    busiest = max(served, key=lambda pid: served[pid] - per_before.get(pid, 0))
    # Stop the process that answered: gunicorn replaces it, the rest of the requests go to others, and what it
    # counted still counts (its file stays; only live gauges die with a process).
    pid = int(busiest.removeprefix("counter_"))
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 30,
               "the gunicorn worker to exit")
    _healthz(stack, 16)
    after, per_after = gateway_metrics(stack), healthz_per_process(metrics_dir, tmp_path / "after")
    served = {name: n - per_before.get(name, 0) for name, n in per_after.items()}
    assert served[busiest] > 0 and len([n for n in served.values() if n > 0]) >= 2, served
    assert sum(served.values()) == 32
    assert delta(after, before, HEALTHZ) == 32  # one scrape, whichever process serves it, counts them all
    latency = ("samq_request_duration_seconds_count", (("route", "/healthz"),))
    assert delta(after, before, latency) == 32


def _idle(stack) -> bool:
    """No job of any earlier test still queued or running."""
    return all(stack.redis.hget(k, "status") not in (b"queued", b"running")
               for k in stack.redis.scan_iter(match=names.job("*")))


def test_a_job_moves_gateway_worker_and_record_numbers(stack, key):
    wait_until(lambda: _idle(stack), 60, "earlier jobs to end")
    gw_before, wk_before = gateway_metrics(stack), samples(stack.worker_metrics("w1"))

    r = stack.post("/v1/jobs", {"image": b64(ROCKET_JPG), "coordinates": "[320,200]"}, key)
    assert r.status_code == 202, r.text
    job_id, polls = r.json()["id"], 0

    def finished():
        nonlocal polls
        polls += 1
        job = stack.get(f"/v1/jobs/{job_id}", key).json()
        return job if job["status"] in ("succeeded", "failed", "canceled") else None

    job = wait_until(finished, 60, f"job {job_id}", interval_s=0.05)
    assert job["status"] == "succeeded", job

    gw, wk = gateway_metrics(stack), samples(stack.worker_metrics("w1"))
    assert delta(gw, gw_before, ("samq_requests_total", (("method", "POST"), ("route", "/v1/jobs"),
                                                         ("status", "202")))) == 1
    assert delta(gw, gw_before, ("samq_requests_total", (("method", "GET"), ("route", "/v1/jobs/<job_id>"),
                                                         ("status", "200")))) == polls
    assert delta(gw, gw_before, ("samq_jobs_total", (("event", "accepted"),))) == 1
    assert delta(gw, gw_before, ("samq_jobs_total", (("event", "succeeded"),))) == 1
    cost = stack.settings.cost_per_job
    credits = [delta(gw, gw_before, ("samq_credits_total", (("event", e),))) for e in ("reserved", "committed",
                                                                                        "refunded")]
    assert credits == [cost, cost, 0]

    assert delta(wk, wk_before, ("samq_worker_jobs_total", (("outcome", "succeeded"),))) == 1
    computed = job["embedding"] == "computed"  # else the rocket's embedding was cached by an earlier test
    for stage, count in {"queue": 1, "fetch": 1, "detect": 0, "encode": int(computed), "decode": 1, "render": 1,
                         "upload": 1}.items():
        assert delta(wk, wk_before, ("samq_worker_stage_seconds_count", (("stage", stage),))) == count, stage
        assert (delta(wk, wk_before, ("samq_worker_stage_seconds_sum", (("stage", stage),))) > 0) == bool(count)
    assert delta(wk, wk_before, ("samq_worker_job_seconds_count", ())) == 1
    cache = [delta(wk, wk_before, ("samq_worker_embedding_cache_total", (("result", r),))) for r in ("hit", "miss")]
    assert sum(cache) == 1
    assert delta(wk, wk_before, ("samq_worker_encoder_calls_total", ())) == cache[1]

    timings = job["timings"]
    assert set(timings) == {"queue_ms", "fetch_ms", "detect_ms", "encode_ms", "decode_ms", "render_ms",
                            "upload_ms", "total_ms"}
    assert timings["detect_ms"] == 0
    for name in ("queue_ms", "fetch_ms", "decode_ms", "render_ms", "upload_ms"):
        assert timings[name] > 0, timings
    assert (timings["encode_ms"] > 0) == computed
    stages = sum(v for k, v in timings.items() if k != "total_ms")
    assert stages <= timings["total_ms"] + 1  # rounding
    # The device thread was busy for this job's model stages (and nothing else ran meanwhile), within the job.
    busy_ms = delta(wk, wk_before, ("samq_worker_device_busy_seconds_total", ())) * 1000
    model_ms = timings["detect_ms"] + timings["encode_ms"] + timings["decode_ms"]
    assert model_ms - 1 <= busy_ms <= timings["total_ms"], (busy_ms, timings)
    # The job's worker lines carry its id and the id of the request that made it.
    log = (stack.logs / "worker-w1.log").read_text()
    assert f"request_id={r.headers['x-request-id']} job_id={job_id}" in log


def test_a_gateway_in_json_mode_writes_only_json_lines(stack, tmp_path):
    json_stack = Stack({**stack.env, "SAMQ_PORT": str(free_port()), "SAMQ_LOG_FORMAT": "json",
                        "SAMQ_GATEWAY_WORKERS": "1", "SAMQ_METRICS_DIR": str(tmp_path / "metrics")}, tmp_path)
    proc = start(gateway_command(json_stack.settings), json_stack.env, tmp_path / "gateway.log")
    try:
        wait_until(lambda: requests.get(json_stack.url + "/healthz", timeout=1).ok, 60, "gateway /healthz")
        assert requests.get(json_stack.url + "/v1/jobs/j-1", headers={"x-request-id": "r-1"}, timeout=10).status_code \
            == 401
    finally:
        stop(proc)
    lines = [json.loads(line) for line in (tmp_path / "gateway.log").read_text().splitlines()]  # all of them JSON
    assert any(o["logger"] == "gunicorn.error" and "Booting worker" in o["message"] for o in lines)
    access = [o for o in lines if o["logger"] == "samq.access" and o["path"] == "/v1/jobs/j-1"]
    assert len(access) == 1 and access[0]["request_id"] == "r-1" and access[0]["job_id"] == "j-1"
    assert access[0]["status"] == 401 and isinstance(access[0]["duration_ms"], int | float)
    assert access[0]["duration_ms"] < 10_000  # milliseconds, not seconds or microseconds


def test_gunicorn_config_starts_from_zero_in_multiprocess_mode(tmp_path):
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "notes.txt").write_text("kept")
    code = ("import os, gateway.gunicorn_conf as c; c.on_starting(None); from prometheus_client import values; "
            "print(os.environ['PROMETHEUS_MULTIPROC_DIR'], values.ValueClass.__name__)")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "SAMQ_METRICS_DIR": str(tmp_path)},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(tmp_path.resolve()), "MmapedValue"]  # prometheus-client counts in files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
