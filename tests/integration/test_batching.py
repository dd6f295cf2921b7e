"""Image batching across jobs in flight: the device thread encodes the waiting jobs' images in one call."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from harness.procs import wait_until
from tests.helpers import wait_for_job


def _png(seed: int, size=(160, 120)) -> str:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _areas(st, key, ids):
    jobs = [wait_for_job(st, key, i, ("succeeded",), 60) for i in ids]
    return [j["objects"][0]["area"] for j in jobs]


def _counter(page: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in page.splitlines() if line.startswith(name + " "))


def test_jobs_in_flight_are_encoded_together(batch_stack, stack):
    key = batch_stack.new_key(20)
    # No worker yet: eight jobs wait in the queue; the worker's four slots take them four at a time.
    images = [_png(i, (160 + 8 * i, 120)) for i in range(8)]
    ids = [batch_stack.post("/v1/jobs", {"image": img, "coordinates": "[20,20]", "outputs": ["json"]}, key)
           .json()["id"] for img in images]
    batch_stack.start_worker("wbatch")

    def all_done():
        jobs = [batch_stack.get(f"/v1/jobs/{i}", key).json() for i in ids]
        return jobs if all(j["status"] == "succeeded" for j in jobs) else None

    jobs = wait_until(all_done, 120, "batched jobs")
    records = [batch_stack.redis.hgetall(f"samq:job:{i}") for i in ids]
    batched = [int(r[b"batch"]) for r in records if b"batch" in r]
    # While the first job's models run, the other slots' jobs wait at the device and go in one encoder call.
    assert batched and all(2 <= n <= 4 for n in batched), batched
    page = batch_stack.worker_metrics("wbatch")
    assert _counter(page, "samq_worker_encoder_calls_total") < len(ids)  # fewer calls than images
    assert _counter(page, "samq_worker_batch_size_sum") == len(ids)  # every image encoded exactly once
    assert all(j["embedding"] == "computed" for j in jobs)  # none was in the cache before
    # A batched call's time is split over the jobs it served: each counts a share, none the whole call twice.
    assert all(j["timings"]["encode_ms"] > 0 for j in jobs)
    assert batch_stack.balance(key) == 12

    # The same answers as a worker encoding one image at a time (the main stack: batching off on CPU).
    other = stack.new_key(8)
    single = [stack.post("/v1/jobs", {"image": img, "coordinates": "[20,20]", "outputs": ["json"]}, other)
              .json()["id"] for img in images]
    batched_areas, alone = _areas(batch_stack, key, ids), _areas(stack, other, single)
    assert all(abs(a - b) <= 0.005 * max(a, b, 1) for a, b in zip(batched_areas, alone, strict=True))
