"""Redis (AOF on) killed and restarted under load: 503 JSON with Retry-After meanwhile, nothing lost after."""

from __future__ import annotations

import base64
import shutil
import signal
import time

import numpy as np
import pytest
import redis
import requests
from PIL import Image

from harness.ledger import check_ledger, job_summary
from harness.photos import ROCKET_JPG, jpeg_bytes
from harness.procs import free_port, start, stop, wait_until
from harness.stack import new_stack, running

pytestmark = pytest.mark.timeout(300)
DOWN_S = 3.0


class AofRedis:
    """A redis-server of our own that persists every write (appendfsync always), killable and restartable."""

    def __init__(self, tmp) -> None:
        self.port, self.dir, self.proc = free_port(), tmp, None

    def start(self) -> None:
        """Start (or restart) on the same port and directory; it reloads the AOF."""
        self.proc = start([shutil.which("redis-server"), "--bind", "127.0.0.1", "--port", str(self.port),
                           "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--dir", str(self.dir),
                           "--maxmemory-policy", "noeviction"], {}, self.dir / "redis.log")
        wait_until(lambda: redis.Redis(port=self.port).ping(), 10, "redis-server")

    def kill(self) -> None:
        """SIGKILL: no shutdown, only what the AOF already holds survives."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop it for good."""
        if self.proc is not None and self.proc.poll() is None:
            stop(self.proc)


@pytest.fixture
def aof_redis(tmp_path):
    server = AofRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("rounds", [1, pytest.param(5, marks=[pytest.mark.slow, pytest.mark.timeout(900)])])
def test_redis_killed_and_restarted_loses_nothing(tmp_path, fault_models, aof_redis, rounds):
    stack = new_stack(0, tmp_path, fault_models, None, SAMQ_REDIS_URL=f"redis://127.0.0.1:{aof_redis.port}/0",
                      SAMQ_WORKER_HEARTBEAT_S="1")
    with running(stack, {"w1": {}}):
        key = stack.new_key(10 * rounds)
        figures = [_one_round(stack, key, aof_redis) for _ in range(rounds)]
        assert stack.balance(key) == 10 * rounds - sum(f["jobs"] for f in figures)
        check_ledger(stack.redis, {key: 10 * rounds})
        assert job_summary(stack.redis) == {"succeeded": sum(f["jobs"] for f in figures)}
    resumed = [f["resumed_s"] for f in figures]
    print(f"\nfigure: Redis SIGKILLed {DOWN_S:g} s under load, {rounds} round(s): every job succeeded once "
          f"(attempts {sorted({a for f in figures for a in f['attempts']})}); consumption resumed after "
          f"{max(resumed):.1f} s at most, all done {max(f['all_done_s'] for f in figures):.1f} s after restart")
    assert max(resumed) <= 10, f"consumption resumed only after {max(resumed):.1f} s"


def _distinct_image() -> str:
    # A different picture each time: the embedding cache would otherwise make every job after the first instant.
    img = Image.open(ROCKET_JPG).convert("RGB")
    img.putpixel((0, 0), tuple(int(v) for v in np.random.default_rng().integers(0, 255, 3)))
    img.putpixel((1, 0), tuple(int(v) for v in np.random.default_rng().integers(0, 255, 3)))
    return base64.b64encode(jpeg_bytes(img, quality=95)).decode()


def _one_round(stack, key, aof_redis) -> dict:
    image = _distinct_image()
    ids = [stack.post("/v1/jobs", {"image": _distinct_image(), "coordinates": "[320,200]"}, key).json()["id"]
           for _ in range(6)]

    def statuses() -> list[str]:
        return [stack.get(f"/v1/jobs/{i}", key).json()["status"] for i in ids]

    wait_until(lambda: "running" in statuses() and "queued" in statuses(), 120, "work under way", interval_s=0.02)
    aof_redis.kill()
    down_at = time.monotonic()
    r = stack.post("/v1/jobs", {"image": image, "coordinates": "[320,200]"}, key)
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable", r.text
    assert int(r.headers["Retry-After"]) > 0
    r = stack.get(f"/v1/jobs/{ids[0]}", key)
    assert r.status_code == 503 and "Retry-After" in r.headers and r.json()["error"]["code"] == "unavailable"
    ready = requests.get(stack.url + "/readyz", timeout=10)
    assert ready.status_code == 503 and ready.json()["redis"] is False
    assert requests.get(stack.url + "/healthz", timeout=10).ok  # the process itself is fine
    time.sleep(max(0.0, DOWN_S - (time.monotonic() - down_at)))

    aof_redis.start()
    up_at = time.monotonic()
    queued = [i for i, s in zip(ids, statuses(), strict=True) if s == "queued"]
    assert queued  # something was still waiting when Redis came back

    def started_again() -> bool:
        return any(stack.get(f"/v1/jobs/{i}", key).json()["status"] != "queued" for i in queued)

    wait_until(started_again, 60, "a queued job to start after the restart", interval_s=0.05)
    resumed_s = time.monotonic() - up_at
    late = stack.post("/v1/jobs", {"image": _distinct_image(), "coordinates": "[320,200]"}, key)
    assert late.status_code == 202, late.text
    ids.append(late.json()["id"])
    wait_until(lambda: set(statuses()) == {"succeeded"}, 180, "every job to succeed", interval_s=0.2)
    all_done_s = time.monotonic() - up_at
    wait_until(lambda: requests.get(stack.url + "/readyz", timeout=10).ok, 10, "/readyz to say ready again")
    return {"jobs": len(ids), "resumed_s": resumed_s, "all_done_s": all_done_s,
            "attempts": [stack.get(f"/v1/jobs/{i}", key).json()["attempts"] for i in ids]}
