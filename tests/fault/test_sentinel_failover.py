"""The Redis primary SIGKILLed under load, with two replicas and three Sentinels: the Sentinels promote a replica, the
gateway and both workers follow it without a restart, and no job answered 202 is lost or charged twice."""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass, field

import pytest
import requests

from harness.ledger import check_ledger, job_summary
from harness.photos import ROCKET_JPG
from harness.procs import wait_until
from harness.stack import Stack, new_stack, running
from shared import workers
from shared.redis_client import connect
from tests.sentinel import RedisGroup

pytestmark = pytest.mark.timeout(420)
CREDITS = 10_000
RECOVERY_S = 30  # the goal: submissions accepted again within this long of the kill
SUBMIT_EVERY_S = 0.1
BEFORE_KILL = 8  # jobs accepted before the primary is killed
AFTER_RECOVERY_S = 3.0  # keep submitting this long once submissions work again
WORKERS = ("w1", "w2")


@dataclass
class Submitter:
    """A thread that submits jobs until told to stop, noting every answer."""

    stack: Stack
    key: str
    accepted: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, job id) of each 202
    refused: dict[str, int] = field(default_factory=dict)  # other answers: "503 unavailable", "ConnectionError"...
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Submit one job every SUBMIT_EVERY_S until stopped."""
        body = {"image": base64.b64encode(ROCKET_JPG.read_bytes()).decode(), "coordinates": "[320,200]"}
        while not self.stop.is_set():
            try:
                r = self.stack.post("/v1/jobs", body, self.key, timeout=30)
                if r.status_code == 202:
                    self.accepted.append((time.monotonic(), r.json()["id"]))
                else:
                    what = f"{r.status_code} {r.json()['error']['code']}"
                    self.refused[what] = self.refused.get(what, 0) + 1
            except requests.RequestException as exc:
                self.refused[type(exc).__name__] = self.refused.get(type(exc).__name__, 0) + 1
            self.stop.wait(SUBMIT_EVERY_S)


@pytest.mark.parametrize("trials", [1, pytest.param(5, marks=[pytest.mark.slow, pytest.mark.timeout(1800)])])
def test_primary_killed_under_load_loses_no_accepted_job(tmp_path, fault_models, trials):
    group = RedisGroup(tmp_path).start()
    try:
        stack = new_stack(0, tmp_path, fault_models, None, **group.env(0), SAMQ_REDIS_MIN_REPLICAS="1",
                          SAMQ_WORKER_HEARTBEAT_S="1", SAMQ_RESEND_AFTER_S="3")
        with running(stack, {name: {} for name in WORKERS}):
            key = stack.new_key(CREDITS)
            figures = [_trial(stack, key, group, n) for n in range(trials)]
            client = connect(stack.settings)
            ledger = check_ledger(client, {key: CREDITS})[key]
            accepted = sum(f["accepted"] for f in figures)
            assert job_summary(client) == {"succeeded": accepted}, job_summary(client)
            assert ledger["committed"] == accepted and ledger["held"] == 0
    finally:
        group.stop()
    recovery = [f["recovered_s"] for f in figures]
    print(f"\nfigure: Redis primary SIGKILLed under load, {trials} trial(s): {accepted} jobs answered 202, all "
          f"succeeded once (charged {ledger['committed']}); submissions accepted again {min(recovery):.1f} to "
          f"{max(recovery):.1f} s after the kill; all done {max(f['done_s'] for f in figures):.1f} s after it at "
          f"most; other answers {[f['refused'] for f in figures]}")


def _trial(stack: Stack, key: str, group: RedisGroup, n: int) -> dict:
    if n:  # the killed server back, empty: the Sentinels make it a replica of the new primary
        group.restart_killed()
    submitter = Submitter(stack, key)
    thread = threading.Thread(target=submitter.run, name="submitter", daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(submitter.accepted) >= BEFORE_KILL, 60, "jobs accepted before the kill")
        old = group.primary()
        group.kill(old)
        killed = time.monotonic()
        wait_until(lambda: any(t > killed for t, _ in submitter.accepted), RECOVERY_S + 30,
                   "a job accepted after the kill", interval_s=0.05)
        recovered_s = min(t for t, _ in submitter.accepted if t > killed) - killed
        time.sleep(AFTER_RECOVERY_S)
    finally:
        submitter.stop.set()
        thread.join(timeout=60)
    assert group.primary() != old
    ids = [job_id for _, job_id in submitter.accepted]

    def statuses() -> dict[str, int]:
        seen: dict[str, int] = {}
        for job_id in ids:
            r = stack.get(f"/v1/jobs/{job_id}", key)
            assert r.status_code != 404, f"job {job_id} answered 202, then 404 after the failover: {r.text}"
            status = r.json()["status"] if r.ok else f"HTTP {r.status_code}"
            seen[status] = seen.get(status, 0) + 1
        return seen

    wait_until(lambda: statuses() == {"succeeded": len(ids)}, 180, f"all {len(ids)} accepted jobs to succeed",
               interval_s=1.0)
    done_s = time.monotonic() - killed
    # Both workers rode out the failover in their own processes (none was restarted: nothing supervises them here).
    for name in WORKERS:
        assert stack.procs[name].poll() is None, f"worker {name} exited during the failover: see {stack.logs}"
    alive = {h.split("@")[0] for h in workers.alive(connect(stack.settings), 3.0)}
    assert alive == set(WORKERS), f"heartbeats after the failover: {alive}"
    assert recovered_s <= RECOVERY_S, f"submissions were accepted again only {recovered_s:.1f} s after the kill"
    print(f"\nfigure: trial {n + 1}: {len(ids)} accepted, accepted again {recovered_s:.1f} s after the kill, all "
          f"succeeded {done_s:.1f} s after it; other answers {submitter.refused}")
    return {"accepted": len(ids), "recovered_s": recovered_s, "done_s": done_s, "refused": submitter.refused}
