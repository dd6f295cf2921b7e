"""Helpers of the test suites alone: waiting for a job or a batch through the API, loading a bench/ script, a
device gate. What the benchmarks share with the tests is in harness/."""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.procs import wait_until
from shared.records import Success

ENDED = ("succeeded", "failed", "canceled")  # the statuses a job ends in


def wait_for_job(stack: object, key: str, job_id: str, states: Collection[str] = ENDED, timeout_s: float = 120,
                 what: str | None = None, interval_s: float = 0.1,
                 where: Callable[[dict], object] | None = None) -> dict:
    """Poll GET /v1/jobs/{job_id} on `stack` (a harness.stack.Stack) until the job's status is one of `states` (and
    `where(job)` holds, when given); the job as the API shows it. TimeoutError after `timeout_s`."""
    def check() -> dict | None:
        job = stack.get(f"/v1/jobs/{job_id}", key).json()
        return job if job["status"] in states and (where is None or where(job)) else None

    return wait_until(check, timeout_s, what or f"job {job_id} to be {' or '.join(states)}", interval_s=interval_s)


def wait_for_batch(stack: object, key: str, batch_id: str, timeout_s: float = 180, interval_s: float = 0.2) -> dict:
    """Poll GET /v1/batches/{batch_id} until the batch is completed (every job in it ended); the batch."""
    return wait_until(lambda: (b := stack.get(f"/v1/batches/{batch_id}", key).json())["status"] == "completed" and b,
                      timeout_s, f"batch {batch_id} to complete", interval_s=interval_s)


def load_bench(name: str) -> ModuleType:
    """A script from bench/ as a module (bench/ is scripts, not a package)."""
    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


class Gated:
    """A models callable for worker.device.Device that holds the device thread on its first call until released
    (`gate.set()`), so that the requests of a test pile up behind it."""

    def __init__(self, models: object) -> None:
        self.models, self.gate, self.calls = models, threading.Event(), 0

    def __call__(self) -> object:
        self.calls += 1
        if self.calls == 1:
            assert self.gate.wait(30)
        return self.models



def success(**fields: Any) -> Success:
    """What a run that succeeded stores (FINISH), with `fields` set and the rest empty."""
    return Success(**{"objects": [], "objects_found": 0, "outputs": {}, "embedding": "computed", "model": "test",
                      "timings": {}, **fields})
