"""P4: jobs/s with 2 worker processes vs 1 on this machine (torch threads = cores / workers).

Run: `python bench/scaleout.py [--jobs 24] [--rounds 2] [--redis-url URL]`
Two stacks run side by side (one with one worker, one with two); rounds alternate between them so that
machine noise hits both. Each round submits `--jobs` distinct photos (rocket.jpg shifted and tinted, so the
embedding cache never hits) as POST /v1/jobs with two clicks, and times first submit to last success.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import os
import time

import numpy as np
import requests
from common import PHOTO, add_redis_arg, bench_stack, record
from PIL import Image

from shared import names


def photos(count: int, offset: int) -> list[str]:
    """Distinct JPEGs (base64), 640x427."""
    source = np.asarray(Image.open(PHOTO).convert("RGB")).astype(np.int16)
    out = []
    for i in range(offset, offset + count):
        buf = io.BytesIO()
        Image.fromarray((np.roll(source, i, axis=1) + i % 11).clip(0, 255).astype(np.uint8)).save(buf, "JPEG")
        out.append(base64.b64encode(buf.getvalue()).decode())
    return out


def round_trip(stack, key: str, images: list[str]) -> float:
    """Jobs per second for one burst of jobs, submit to last success."""
    session = requests.Session()
    start = time.perf_counter()
    ids = []
    for image in images:
        r = session.post(stack.url + "/v1/jobs", json={"image": image, "coordinates": [[320, 200], [330, 150]]},
                         headers={"x-api-key": key}, timeout=60)
        r.raise_for_status()
        ids.append(r.json()["id"])
    client = stack.redis
    while True:
        states = [s.decode() if s else None for s in (client.hget(names.job(i), "status") for i in ids)]
        if all(s in ("succeeded", "failed", "canceled") for s in states):
            break
        time.sleep(0.05)
    assert all(s == "succeeded" for s in states), states
    return len(ids) / (time.perf_counter() - start)


def main() -> None:
    """Alternate rounds between the 1-worker and the 2-worker stack."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    add_redis_arg(parser)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    # (workers, torch threads each): the rule (threads = cores / workers), plus one worker on one
    # thread to tell the gain of a second process from the loss of a second thread on a busy machine.
    configs = {"1": (1, cores), "2": (2, max(1, cores // 2)), "1x1thread": (1, 1)}
    rates: dict[str, list[float]] = {name: [] for name in configs}
    with contextlib.ExitStack() as stacks:
        started = {}
        for db, (name, (n, threads)) in enumerate(configs.items(), start=7):
            workers = {f"w{i}": {"OMP_NUM_THREADS": str(threads)} for i in range(n)}
            stack = stacks.enter_context(bench_stack(args.redis_url, db, workers, SAMQ_GATEWAY_WORKERS="1"))
            started[name] = (stack, stack.new_key(10**6), n)
        for i, (stack, key, n) in enumerate(started.values()):  # warm-up: every worker's first job
            round_trip(stack, key, photos(2 * n, 10_000 + i * 10))
        for r in range(args.rounds):
            for i, (name, (stack, key, _)) in enumerate(started.items()):
                rates[name].append(round_trip(stack, key, photos(args.jobs, (r * len(configs) + i) * args.jobs)))
                print(f"  round {r + 1}: {name:<10} {rates[name][-1]:.2f} jobs/s")
    mean = {name: sum(v) / len(v) for name, v in rates.items()}
    ratio = mean["2"] / mean["1"]
    print(f"P4 {mean['1']:.2f} jobs/s with 1 worker ({cores} threads), {mean['2']:.2f} with 2 "
          f"({max(1, cores // 2)} thread each) -> {ratio:.2f}x (goal >= 1.8x); "
          f"1 worker on 1 thread: {mean['1x1thread']:.2f} jobs/s ({mean['2'] / mean['1x1thread']:.2f}x of it)")
    record("p4-scaleout", {"jobs_per_round": args.jobs, "rounds": args.rounds, "cores": cores,
                           "configs": {k: {"workers": n, "torch_threads": t} for k, (n, t) in configs.items()},
                           "jobs_per_s": {k: round(v, 3) for k, v in mean.items()}, "ratio": round(ratio, 3),
                           "rounds_jobs_per_s": {k: [round(v, 3) for v in vs] for k, vs in rates.items()}})


if __name__ == "__main__":
    main()
