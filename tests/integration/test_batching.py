"""Image batching: waiting jobs' images are encoded together, in their queue order, results unchanged."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from tests.helpers import wait_until


def _png(seed: int, size=(160, 120)) -> str:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _areas(st, key, ids):
    jobs = [wait_until(lambda i=i: (j := st.get(f"/v1/jobs/{i}", key).json())["status"] == "succeeded" and j,
                       60, "job") for i in ids]
    return [j["objects"][0]["area"] for j in jobs]


def test_waiting_jobs_are_encoded_in_one_batch(batch_stack, stack):
    key = batch_stack.new_key(20)
    # No worker yet: five jobs wait in the queue, in this order.
    images = [_png(i, (160 + 8 * i, 120)) for i in range(5)]
    ids = [batch_stack.post("/v1/jobs", {"image": img, "coordinates": "[20,20]", "outputs": ["json"]}, key)
           .json()["id"] for img in images]
    batch_stack.start_worker("wbatch")

    def all_done():
        jobs = [batch_stack.get(f"/v1/jobs/{i}", key).json() for i in ids]
        return jobs if all(j["status"] == "succeeded" for j in jobs) else None

    jobs = wait_until(all_done, 120, "batched jobs")
    started = [j["started_at"] for j in jobs]
    assert started == sorted(started)  # the queue order is kept
    records = [batch_stack.redis.hgetall(f"samq:job:{i}") for i in ids]
    assert int(records[0][b"batch"]) == 4  # the first job encoded itself and the next three at once
    assert int(records[1][b"batch"]) == 1  # the second found those three cached and encoded the fifth
    assert all(j["embedding"] == "cached" for j in jobs)  # every job read its embedding from the cache
    assert batch_stack.balance(key) == 15

    # The same answers as a worker encoding one image at a time (the main stack: batching off).
    other = stack.new_key(5)
    single = [stack.post("/v1/jobs", {"image": img, "coordinates": "[20,20]", "outputs": ["json"]}, other)
              .json()["id"] for img in images]
    batched, alone = _areas(batch_stack, key, ids), _areas(stack, other, single)
    assert all(abs(a - b) <= 0.005 * max(a, b, 1) for a, b in zip(batched, alone, strict=True))
