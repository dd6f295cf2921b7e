"""Footprint: the most Redis memory one accepted job can take, every request field at its bound (goal <= 64 KiB).

Run: `python bench/footprint.py [--items 100] [--redis-url URL]`
Submits through the gateway's routes in-process (create_app; no gunicorn, no worker, so nothing is consumed)
on database 1 of the Redis server, which it flushes before each case. Each case is one accepted request:
  job         POST /v1/jobs, every field at its bound (shared/schemas.py), with an Idempotency-Key
  batch-1     POST /v1/batches of one such item, the batch's metadata and webhook_url at their bounds too
  batch-2     the same with two items (the batch and idempotency records shared 2 ways)
  batch-N     the same batch with --items items: the batch and idempotency records shared N ways
Sizes are `MEMORY USAGE key SAMPLES 0` (every field counted, allocator rounding included) of the keys the
accept wrote, per job: the job hash, its params string and credit hold, the idempotency record, the batch hash
and job list (a batch's share). The waiting-set entry and the broker's message are reported beside them, and the
key's own records (balance, unfinished count, key hash) and global counters are left out: they do not grow per
job. Text prompts are 1,000 four-byte characters (the prompt is bounded in characters); every other text field
is bounded in UTF-8 bytes, so its content does not change its size.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import redis
from common import add_redis_arg, record

from gateway.app import create_app
from shared import names
from shared.keys import KeyStore
from shared.schemas import (
    BATCH_METADATA_MAX_BYTES,
    IDEMPOTENCY_KEY_MAX_CHARS,
    IMAGE_URL_MAX_BYTES,
    METADATA_MAX_BYTES,
    OUTPUTS,
    PROMPT_MAX_CHARS,
    WEBHOOK_URL_MAX_BYTES,
)
from shared.settings import Settings

DB = 1
GOAL = 64 * 1024
PUBLIC = "https://93.184.216.34/"  # a public address literal: the URL guard passes it without DNS
BASE_URL = "https://samq.example.com"  # the job's URLs in the stored answer are built from the request's host


def url_of(size: int, tag: str) -> str:
    return (PUBLIC + tag + "/").ljust(size, "a")


def metadata_at_bound(max_bytes: int = METADATA_MAX_BYTES) -> dict:
    """{"k": "xxx..."}: exactly `max_bytes` as compact JSON (the shape does not matter: one string)."""
    return {"k": "x" * (max_bytes - len('{"k":""}'))}


def item_at_bounds() -> dict:
    """A job body with every stored field at its bound."""
    return {"image": url_of(IMAGE_URL_MAX_BYTES, "image"), "prompt": "\N{GRINNING FACE}" * PROMPT_MAX_CHARS,
            "box_threshold": 0.123456789012345, "text_threshold": 0.987654321098765, "max_objects": 100,
            "outputs": list(OUTPUTS), "polygons": True, "multimask": "all", "priority": "normal",
            "metadata": metadata_at_bound(), "webhook_url": url_of(WEBHOOK_URL_MAX_BYTES, "hook"),
            "webhook_events": ["started", "completed"]}


def kind_of(key: bytes) -> str:
    name = key.decode()
    for prefix in ("samq:job:", "samq:params:", "samq:hold:", "samq:idem:", "samq:waiting:"):
        if name.startswith(prefix):
            return prefix.rstrip(":").split(":", 1)[1]
    if name.startswith("samq:batch:"):
        return "batch_jobs" if name.endswith(":jobs") else "batch"
    if name.startswith(names.QUEUE_NORMAL):
        return "broker"
    return "shared"  # the key's balance, unfinished count and record; stats; kombu bindings


PER_JOB = ("job", "params", "hold", "idem", "batch", "batch_jobs")
QUEUED = ("waiting", "broker")


def measure(db: redis.Redis, client, path: str, body: dict, jobs: int) -> dict:
    """Submit one request on the flushed database and sum MEMORY USAGE per kind of key, per job."""
    db.flushdb()
    key = KeyStore(db).create(10**6, "footprint")
    r = client.post(path, json=body, headers={"x-api-key": key, "Idempotency-Key": "k" * IDEMPOTENCY_KEY_MAX_CHARS},
                    base_url=BASE_URL)
    if r.status_code != 202:
        sys.exit(f"{path} answered {r.status_code}: {r.get_data(as_text=True)[:500]}")
    kinds: dict[str, int] = {}
    for k in db.scan_iter(count=1000):
        kinds[kind_of(k)] = kinds.get(kind_of(k), 0) + int(db.memory_usage(k, samples=0) or 0)
    per_job = {kind: round(kinds.get(kind, 0) / jobs) for kind in (*PER_JOB, *QUEUED)}
    records = sum(per_job[k] for k in PER_JOB)
    return {"jobs": jobs, "request_body_bytes": len(json.dumps(body)), "bytes_per_job": per_job,
            "records_per_job": records, "with_queue_entries_per_job": records + sum(per_job[k] for k in QUEUED),
            "shared_not_per_job": kinds.get("shared", 0)}


def main() -> None:
    """Measure the three cases and report the largest."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100, help="items of the batch-N case")
    add_redis_arg(parser)
    args = parser.parse_args()
    db = redis.Redis.from_url(f"{args.redis_url.rstrip('/')}/{DB}")
    with tempfile.TemporaryDirectory(prefix="samq-footprint-") as tmp:
        settings = Settings(redis_url=f"{args.redis_url.rstrip('/')}/{DB}", storage_url=f"file://{Path(tmp)}",
                            rate_limit_per_min=0)
        client = create_app(settings).test_client()
        item = item_at_bounds()
        batch_fields = {"metadata": metadata_at_bound(BATCH_METADATA_MAX_BYTES),  # a batch's own bound: 4 KiB
                        "webhook_url": url_of(WEBHOOK_URL_MAX_BYTES, "batch")}
        cases = {
            "job": measure(db, client, "/v1/jobs", item, 1),
            "batch-1": measure(db, client, "/v1/batches", {"items": [item], **batch_fields}, 1),
            "batch-2": measure(db, client, "/v1/batches", {"items": [item] * 2, **batch_fields}, 2),
            f"batch-{args.items}": measure(db, client, "/v1/batches",
                                           {"items": [item] * args.items, **batch_fields}, args.items),
        }
        db.flushdb()
    worst = max(cases, key=lambda c: cases[c]["records_per_job"])
    for name, case in cases.items():
        split = ", ".join(f"{k} {v}" for k, v in case["bytes_per_job"].items() if v)
        print(f"  {name:<10} {case['records_per_job']:>6} bytes of records per job "
              f"({case['with_queue_entries_per_job']} with its queue entries): {split}")
    figure = cases[worst]["records_per_job"]
    print(f"footprint: at most {figure} bytes ({figure / 1024:.1f} KiB) of Redis records per accepted job "
          f"({worst}); goal <= {GOAL} bytes: {'met' if figure <= GOAL else 'NOT met'}")
    record("footprint", {"goal_bytes": GOAL, "worst_case": worst, "worst_records_per_job": figure,
                         "goal_met": figure <= GOAL, "cases": cases, "base_url": BASE_URL})


if __name__ == "__main__":
    main()
