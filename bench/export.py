"""Dataset export of a 1,000-job batch: time and peak memory of GET /v1/batches/<id>/export (COCO and YOLO-seg),
streamed by an in-process gateway from local-file storage; and the worker's cost of keeping each job's masks.

Run: `python bench/export.py [--jobs 1000] [--objects 8] [--redis-url redis://127.0.0.1:6379]` (Redis database 1
is flushed); recorded in bench/results/export.json. The masks are ellipses at 1920x1080 (smooth outlines, like
real masks, not noise), `--distinct` different documents reused over the jobs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import psutil
import redis
from common import record

from gateway.app import create_app
from shared import names
from shared.jobs import new_id
from shared.keys import KeyStore, hash_key
from shared.records import now_iso
from shared.settings import Settings
from shared.storage import FileStorage
from worker.export import kept_masks
from worker.pipeline import Object

SIZE = (1920, 1080)


def _objects(rng: np.random.Generator, n: int) -> list[Object]:
    objects = []
    for i in range(n):
        mask = np.zeros((SIZE[1], SIZE[0]), np.uint8)
        centre = (int(rng.integers(100, SIZE[0] - 100)), int(rng.integers(100, SIZE[1] - 100)))
        axes = (int(rng.integers(20, 300)), int(rng.integers(20, 200)))
        cv2.ellipse(mask, centre, axes, float(rng.integers(0, 180)), 0, 360, 1, -1)
        objects.append(Object(f"class{i % 3}", 0.9, mask.astype(bool), None))
    return objects


class Peak:
    """The process's resident memory, sampled every 5 ms while a block runs."""

    def __init__(self) -> None:
        self.proc, self.peak, self.stop = psutil.Process(), 0, threading.Event()

    def __enter__(self) -> Peak:
        self.base = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--objects", type=int, default=8)
    parser.add_argument("--distinct", type=int, default=20)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    samples = [_objects(rng, args.objects) for _ in range(args.distinct)]
    keep_s = []
    docs = []
    for objects in samples:  # the worker's side: what every job now pays to keep its masks
        start = time.perf_counter()
        docs.append(kept_masks(SIZE, objects))
        keep_s.append(time.perf_counter() - start)
    url = args.redis_url.rstrip("/") + "/1"
    client = redis.Redis.from_url(url)
    client.flushdb()
    with tempfile.TemporaryDirectory() as tmp:
        storage = FileStorage(Path(tmp) / "storage")
        settings = Settings(redis_url=url, storage_url=f"file://{Path(tmp) / 'storage'}", rate_limit_per_min=0)
        app = create_app(settings)
        key = KeyStore(client).create(1, "bench")
        key_id = hash_key(key)
        batch_id, ids = new_id(), [new_id() for _ in range(args.jobs)]
        with client.pipeline(transaction=False) as pipe:
            for i, job_id in enumerate(ids):
                pipe.hset(names.job(job_id), mapping={"id": job_id, "status": "succeeded", "key_id": key_id,
                                                      "metadata": json.dumps({"file_name": f"img{i:05d}.jpg"})})
                storage.put(f"results/{job_id}/masks.json", docs[i % len(docs)], "application/json")
            pipe.rpush(names.batch_jobs(batch_id), *ids)
            pipe.hset(names.batch(batch_id), mapping={"id": batch_id, "key_id": key_id, "created_at": now_iso(),
                                                      "total": args.jobs, "queued": 0, "running": 0,
                                                      "succeeded": args.jobs, "failed": 0, "canceled": 0})
            pipe.execute()
        http = app.test_client()
        results = {}
        def fetch(fmt: str) -> tuple[float, float, int]:
            start = time.perf_counter()
            response = http.get(f"/v1/batches/{batch_id}/export?format={fmt}", headers={"x-api-key": key},
                                buffered=False)
            assert response.status_code == 200, response.status_code
            first, size = None, 0
            for piece in response.response:
                first = first or time.perf_counter() - start
                size += len(piece)
            return time.perf_counter() - start, first, size

        for fmt in ("coco", "yolo"):
            with Peak() as peak:  # timed without tracemalloc (it slows every allocation)
                total, first, size = fetch(fmt)
            tracemalloc.start()
            fetch(fmt)
            heap = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            results[fmt] = {"seconds": round(total, 3), "first_byte_s": round(first, 4), "bytes": size,
                            "python_heap_peak_mib": round(heap / 2**20, 1),
                            "rss_growth_mib": round((peak.peak - peak.base) / 2**20, 1)}
            print(f"{fmt}: {args.jobs} jobs x {args.objects} objects in {total:.2f} s "
                  f"(first byte {first * 1000:.0f} ms), "
                  f"{size / 2**20:.1f} MiB out, Python heap peak {heap / 2**20:.1f} MiB, RSS +"
                  f"{(peak.peak - peak.base) / 2**20:.1f} MiB", flush=True)
    client.flushdb()
    keep = {"median_ms_per_job": round(statistics.median(keep_s) * 1000, 1), "objects": args.objects,
            "size": f"{SIZE[0]}x{SIZE[1]}", "masks_json_bytes": int(statistics.median(len(d) for d in docs))}
    print(f"worker: masks.json for {args.objects} objects at 1080p in {keep['median_ms_per_job']} ms per job "
          f"({keep['masks_json_bytes']} bytes)")
    record("export", {"jobs": args.jobs, "objects_per_job": args.objects, "storage": "file", "export": results,
                      "keep_masks": keep})


if __name__ == "__main__":
    main()
