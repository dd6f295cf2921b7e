"""What the benchmarks share: a real stack on loopback, statistics, a real photo, recording results."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python bench/x.py` imports this checkout's code

from harness import stack as stack_module  # noqa: E402
from harness.photos import ROCKET_JPG  # noqa: E402  (640x427 JPEG photograph, public domain)
from harness.stack import Stack, new_stack, running  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PHOTO = ROCKET_JPG


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between ranks."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary_ms(seconds: list[float]) -> dict[str, float]:
    """p50, p95 and mean of durations, in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
            "mean_ms": round(statistics.fmean(ms), 2)}


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def git_revision() -> str:
    """The checkout's short revision, with '+dirty' for uncommitted changes."""
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    mine = ["--", ".", ":!bench/results"]  # results written by earlier runs do not make the code dirty
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", *mine], cwd=ROOT,
                           capture_output=True, text=True).stdout
    return rev.strip() + ("+dirty" if dirty.strip() else "")


def record(name: str, result: dict) -> Path:
    """Write a benchmark's result with date, machine and revision to bench/results/NAME.json."""
    RESULTS.mkdir(exist_ok=True)
    result = {"benchmark": name, "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": f"{platform.node()} {platform.machine()}, {_cores()} cores", "revision": git_revision(),
              "command": " ".join([Path(sys.executable).name, *sys.argv]), **result}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def _cores() -> int:
    return os.cpu_count() or 0


@contextmanager
def bench_stack(redis_url: str, db: int, worker_envs: dict[str, dict[str, str]] | None, code: Path | None = None,
                **env: str) -> Iterator[Stack]:
    """A gateway (gunicorn) and workers (celery) on `redis_url`/`db`, local-file storage, tiny-random models.

    `code`: another checkout (e.g. `git archive main`) whose processes to run instead of this one's, for A/B runs.
    """
    if code is not None:
        env["PYTHONPATH"] = str(code)
    with tempfile.TemporaryDirectory(prefix="samq-bench-") as tmp, _cwd(code or ROOT):
        root = Path(tmp)
        models = Path(tempfile.gettempdir()) / "samq-bench-models"  # built once, reused by later runs
        models.mkdir(exist_ok=True)
        env = {"SAMQ_REDIS_URL": f"{redis_url.rstrip('/')}/{db}", "SAMQ_RATE_LIMIT_PER_MIN": "0", **env}
        stack = new_stack(db, root, models, None, **env)
        with contextlib.ExitStack() as processes:
            with _commands_of(code, stack.env):  # only while the processes start
                started = processes.enter_context(running(stack, worker_envs))
            yield started


_PRINT_COMMANDS = """import json
from gateway.supervisor import gateway_command, worker_command
from shared.settings import Settings
print(json.dumps([gateway_command(Settings()), worker_command(Settings(), name="@NAME@")]))"""


def start_worker(stack: Stack, name: str, code: Path | None = None, **env: str) -> subprocess.Popen:
    """Start one more worker on a running bench stack, with `code`'s own command line when it is another checkout."""
    with _commands_of(code, stack.env):
        return stack.start_worker(name, **env)


@contextmanager
def _commands_of(code: Path | None, env: dict[str, str]) -> Iterator[None]:
    """Start the processes with the command lines of `code`'s own supervisor (they change between revisions)."""
    if code is None:
        yield
        return
    out = subprocess.run([sys.executable, "-c", _PRINT_COMMANDS], cwd=code, env={**os.environ, **env},
                         capture_output=True, text=True, check=True).stdout
    gateway, worker = json.loads(out.splitlines()[-1])
    saved = stack_module.gateway_command, stack_module.worker_command
    stack_module.gateway_command = lambda settings: gateway
    stack_module.worker_command = lambda settings, name: [w.replace("@NAME@", name) for w in worker]
    try:
        yield
    finally:
        stack_module.gateway_command, stack_module.worker_command = saved


@contextmanager
def _cwd(path: Path) -> Iterator[None]:
    # `python -m gunicorn|celery` puts the working directory first on sys.path: start them from the checkout.
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def baseline_checkout(rev: str, into: Path) -> Path:
    """Export a git revision of this repository into a folder (for A/B runs against it)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


MODEL_STAGES = ("detect_ms", "encode_ms", "decode_ms")


def worker_figures(jobs: list[dict]) -> dict:
    """Jobs/s and the device-busy fraction of finished jobs, from their own records.

    Busy = the sum over jobs of their model stages (detect + encode + decode: a batched call is split over its
    jobs, so the sum is the device time spent) / the wall time from the first start to the last finish.
    """
    import statistics

    first = min(datetime.fromisoformat(j["started_at"]) for j in jobs)
    last = max(datetime.fromisoformat(j["finished_at"]) for j in jobs)
    wall_s = (last - first).total_seconds()
    model_s = sum(j["timings"][s] for j in jobs for s in MODEL_STAGES) / 1000
    return {"jobs": len(jobs), "wall_s": round(wall_s, 2), "model_s": round(model_s, 2),
            "busy": round(model_s / wall_s, 3), "jobs_per_s": round(len(jobs) / wall_s, 3),
            "median_timings_ms": {s: round(statistics.median(j["timings"][s] for j in jobs), 1)
                                  for s in jobs[0]["timings"]}}


def wait_jobs(stack: Stack, key: str, ids: list[str], timeout_s: float = 1800) -> list[dict]:
    """Poll until every job has ended; all must have succeeded."""
    from harness.procs import wait_until

    def done():
        jobs = [stack.get(f"/v1/jobs/{i}", key).json() for i in ids]
        return jobs if all(j["status"] in ("succeeded", "failed", "canceled") for j in jobs) else None

    jobs = wait_until(done, timeout_s, "queued jobs", interval_s=0.5)
    failed = [j.get("error") for j in jobs if j["status"] != "succeeded"]
    assert not failed, failed
    return jobs


def add_redis_arg(parser) -> None:
    """--redis-url, the Redis server the benchmark uses; it flushes the databases it takes: 1 (footprint.py),
    2 to 9 (the scripts that start a service: overhead 2-3, accept 4-5, pipelined 4, gpu 5, scale 6, scaleout 7-9,
    sync_concurrency 9)."""
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379", help="Redis server (no database)")
