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
    rates: dict[int, list[float]] = {1: [], 2: []}
    with contextlib.ExitStack() as stacks:
        started = {}
        for n, db in ((1, 7), (2, 8)):
            threads = str(max(1, cores // n))
            workers = {f"w{i}": {"OMP_NUM_THREADS": threads} for i in range(n)}
            stack = stacks.enter_context(bench_stack(args.redis_url, db, workers, SAMQ_GATEWAY_WORKERS="1"))
            started[n] = (stack, stack.new_key(10**6))
        for n, (stack, key) in started.items():  # warm-up: every worker's first job
            round_trip(stack, key, photos(2 * n, 10_000 + n * 10))
        for r in range(args.rounds):
            for n, (stack, key) in started.items():
                rates[n].append(round_trip(stack, key, photos(args.jobs, (r * 2 + n) * args.jobs)))
                print(f"  round {r + 1}: {n} worker(s) {rates[n][-1]:.2f} jobs/s")
    one, two = (sum(rates[n]) / len(rates[n]) for n in (1, 2))
    print(f"P4 {one:.2f} jobs/s with 1 worker, {two:.2f} with 2 -> {two / one:.2f}x (goal >= 1.8x); "
          f"torch threads {cores} and {max(1, cores // 2)}")
    record("p4-scaleout", {"jobs_per_round": args.jobs, "rounds": args.rounds, "cores": cores,
                           "jobs_per_s": {"1": round(one, 3), "2": round(two, 3)}, "ratio": round(two / one, 3),
                           "rounds_jobs_per_s": {str(k): [round(v, 3) for v in vs] for k, vs in rates.items()}})


if __name__ == "__main__":
    main()
