"""`samq run` supervises: a worker, gateway or webhook worker that dies is restarted, its job finishes, the
service answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis
import requests

from gateway import supervisor
from gateway.supervisor import Child, GaveUp, supervise_once
from harness.ledger import check_ledger
from harness.procs import free_port, wait_until

SAMQ = Path(sys.executable).parent / "samq"


def _child(proc: psutil.Process, needle: str) -> psutil.Process:
    return next(c for c in proc.children() if needle in " ".join(c.cmdline()))  # samq run's own children


@pytest.mark.timeout(420)
def test_worker_and_gateway_killed_under_samq_run_are_restarted(tmp_path, fault_models, slow_image):
    redis_port, port = free_port(), free_port()
    env = {**os.environ, "SAMQ_MODELS": "tiny-random", "SAMQ_MODEL_DIR": str(fault_models), "SAMQ_PORT": str(port),
           "SAMQ_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "SAMQ_STORAGE_URL": f"file://{tmp_path}/store",
           "SAMQ_GATEWAY_WORKERS": "1", "SAMQ_WORKER_HEARTBEAT_S": "1", "HF_HUB_OFFLINE": "1",
           "SAMQ_MAX_IMAGE_BYTES": str(64 * 1024 * 1024), "SAMQ_MAX_IMAGE_PIXELS": "60000000"}
    log_path = tmp_path / "run.log"
    log = log_path.open("w+")
    proc = subprocess.Popen([str(SAMQ), "run"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: "samq ready" in log_path.read_text(), 240, "the ready line")
        key = subprocess.run([str(SAMQ), "keys", "create", "--credits", "3"], env=env, capture_output=True,
                             text=True, check=True).stdout.split()[-1]
        headers = {"x-api-key": key}
        job_id = requests.post(f"{base}/v1/jobs", headers=headers, timeout=60,
                               json={"image": slow_image, "coordinates": "[3000,2000]"}).json()["id"]

        def job() -> dict:
            return requests.get(f"{base}/v1/jobs/{job_id}", headers=headers, timeout=10).json()

        wait_until(lambda: job()["status"] == "running", 120, "the job to start", interval_s=0.05)
        worker = _child(psutil.Process(proc.pid), "worker.celery_app")
        worker.kill()
        killed_at = time.monotonic()
        assert requests.get(f"{base}/healthz", timeout=5).ok  # the gateway answers while the worker is away
        final = wait_until(lambda: (j := job())["status"] in ("succeeded", "failed") and j, 240, "the job")
        recovered_s = time.monotonic() - killed_at
        assert final["status"] == "succeeded" and final["attempts"] == 2, final
        text = log_path.read_text()
        assert "the worker stopped (killed by SIGKILL)" in text and "restarting the worker" in text
        # Brought back by the lease mechanism every worker runs (no requeue of samq run's own): the restarted
        # worker's heartbeat claimed the job once its lease lapsed.
        assert f"job {job_id}: its worker's lease lapsed; queued again" in text
        print(f"\nfigure: samq run, worker SIGKILLed mid-job: job succeeded {recovered_s:.1f} s after the kill")

        gateway = _child(psutil.Process(proc.pid), "gunicorn")
        gateway.kill()
        wait_until(lambda: "restarting the gateway" in log_path.read_text(), 30, "the gateway's restart")
        assert "the gateway stopped (killed by SIGKILL)" in log_path.read_text()
        wait_until(lambda: _child(psutil.Process(proc.pid), "gunicorn").pid != gateway.pid, 10, "a new gateway")
        wait_until(lambda: requests.get(f"{base}/v1/credits", headers=headers, timeout=2).ok, 60, "gateway back")

        webhooks = _child(psutil.Process(proc.pid), "worker.webhook_app")
        webhooks.kill()
        wait_until(lambda: _child(psutil.Process(proc.pid), "worker.webhook_app").pid != webhooks.pid, 30,
                   "a new webhook worker")
        assert "the webhook worker stopped (killed by SIGKILL)" in log_path.read_text()
        assert proc.poll() is None  # samq run kept going throughout
        check_ledger(redis.Redis(port=redis_port), {key: 3})
        assert requests.get(f"{base}/v1/credits", headers=headers, timeout=5).json()["credits"] == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


def test_a_child_that_keeps_crashing_is_given_up_on_with_a_clear_message(monkeypatch, capsys):
    monkeypatch.setattr(supervisor, "RESTART_BACKOFF_S", (0, 0, 0))
    child = Child("worker", [sys.executable, "-c", "raise SystemExit(3)"])
    child.start()
    deaths = []
    with pytest.raises(GaveUp, match=r"the worker crashed 4 times in a row.*exit code 3.*giving up"):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            supervise_once([child], deaths.append)
            time.sleep(0.05)
    assert len(deaths) == 3  # restarted three times (the backoff's length), then given up
    err = capsys.readouterr().err
    assert err.count("the worker stopped (exit code 3)") == 3 and err.count("restarting the worker") == 3


def test_a_child_that_ran_long_enough_starts_its_backoff_over(monkeypatch):
    monkeypatch.setattr(supervisor, "RESTART_BACKOFF_S", (0,))
    monkeypatch.setattr(supervisor, "STABLE_AFTER_S", 0.0)  # every run counts as stable
    child = Child("gateway", [sys.executable, "-c", "pass"])
    child.start()
    deadline = time.monotonic() + 10
    restarts = 0
    while restarts < 4 and time.monotonic() < deadline:  # never gives up: each crash followed a stable run
        before = child.proc
        supervise_once([child])
        restarts += child.proc is not before
        time.sleep(0.05)
    assert restarts == 4 and child.fast_crashes == 0
    child.proc.wait()
