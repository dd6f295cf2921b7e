"""`samq run` (what `make run` starts): Redis if needed, gateway, worker, ready line, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from harness.photos import ROCKET_JPG, b64
from harness.procs import free_port, wait_until

SAMQ = Path(sys.executable).parent / "samq"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_samq_run_starts_redis_and_everything_then_stops_it_all(tmp_path, model_dir, sig):
    redis_port, port = free_port(), free_port()
    env = {**os.environ, "SAMQ_MODELS": "tiny-random", "SAMQ_MODEL_DIR": str(model_dir), "SAMQ_PORT": str(port),
           "SAMQ_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "SAMQ_STORAGE_URL": f"file://{tmp_path}/store",
           "SAMQ_GATEWAY_WORKERS": "1", "HF_HUB_OFFLINE": "1"}
    log = (tmp_path / "run.log").open("w+")
    proc = subprocess.Popen([str(SAMQ), "run"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        wait_until(lambda: "samq ready" in (tmp_path / "run.log").read_text(), 180, "the ready line")
        text = (tmp_path / "run.log").read_text()
        assert f"http://127.0.0.1:{port}" in text and f"redis-server started by samq on 127.0.0.1:{redis_port}" in text
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("redis-server" in c.name() for c in children)
        key = subprocess.run([str(SAMQ), "keys", "create", "--credits", "3"], env=env, capture_output=True,
                             text=True, check=True).stdout.split()[-1]
        r = requests.post(f"http://127.0.0.1:{port}/v1/sam-v2-image", headers={"x-api-key": key},
                          json={"image": b64(ROCKET_JPG), "coordinates": "[320,200]"}, timeout=60)
        assert r.status_code == 200 and r.headers["x-remaining-credits"] == "2"
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0
        time.sleep(0.5)
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
