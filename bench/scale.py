"""P6: Redis memory per queued job (broker message included) and the time to accept a 1,000-item batch.

Run: `python bench/scale.py [--jobs 10000] [--via batches|jobs] [--baseline REV] [--redis-url URL]`
No worker runs, so every job stays queued. Memory is Redis's `used_memory` after minus before, divided by
the jobs (the Redis server must be this benchmark's alone). Items are a 16x16 PNG as base64 with two clicks:
image bytes live in storage, never in Redis, so the figure does not depend on the image.
--via jobs submits one POST /v1/jobs per job instead (revisions without batches).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import redis
import requests
from common import add_redis_arg, baseline_checkout, bench_stack, record
from PIL import Image

BATCH = 1000


def tiny_png() -> str:
    """A 16x16 PNG as base64."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 100, 50)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def where_memory_goes(db: redis.Redis) -> dict[str, int]:
    """MEMORY USAGE summed per kind of key (job ids and batch ids replaced by '*')."""
    kinds: dict[str, int] = {}
    for key in db.scan_iter(count=1000):
        name = key.decode(errors="replace")
        parts = name.split(":")
        kind = ":".join(parts[:2]) + (":*" if len(parts) > 2 else "")
        kinds[kind] = kinds.get(kind, 0) + int(db.memory_usage(key) or 0)
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]))


def main() -> None:
    """Queue the jobs, then report bytes per job and batch accept times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--via", choices=("batches", "jobs"), default="batches")
    parser.add_argument("--baseline", help="run this git revision's gateway instead of this checkout's")
    add_redis_arg(parser)
    args = parser.parse_args()
    item = {"image": tiny_png(), "coordinates": [[8, 8], [4, 4]]}
    env = {"SAMQ_MAX_BATCH_ITEMS": str(BATCH)}
    with contextlib.ExitStack() as stacks:
        code = baseline_checkout(args.baseline, Path(stacks.enter_context(tempfile.TemporaryDirectory()))) \
            if args.baseline else None
        stack = stacks.enter_context(bench_stack(args.redis_url, 6, None, code=code, **env))
        session, key = requests.Session(), stack.new_key(10**9)
        server = redis.Redis.from_url(args.redis_url)
        before = int(server.info("memory")["used_memory"])
        times = []
        if args.via == "batches":
            for _ in range(args.jobs // BATCH):
                start = time.perf_counter()
                r = session.post(stack.url + "/v1/batches", json={"items": [item] * BATCH},
                                 headers={"x-api-key": key}, timeout=120)
                times.append(time.perf_counter() - start)
                r.raise_for_status()
        else:
            for _ in range(args.jobs):
                start = time.perf_counter()
                session.post(stack.url + "/v1/jobs", json=item, headers={"x-api-key": key}).raise_for_status()
                times.append(time.perf_counter() - start)
        after = int(server.info("memory")["used_memory"])
        db = stack.redis
        queued = sum(db.llen(q) for q in db.keys("samq.infer*") if db.type(q) == b"list")
        usage = where_memory_goes(db)
    per_job = (after - before) / args.jobs
    result = {"jobs": args.jobs, "via": args.via, "baseline": args.baseline, "bytes_per_job": round(per_job),
              "broker_messages": queued, "memory_by_key_kind": usage, "used_memory_before": before,
              "used_memory_after": after}
    if args.via == "batches":
        result["batch_accept_s"] = {"p50": round(statistics.median(times), 3), "max": round(max(times), 3)}
        print(f"P6 1000-item batch accepted in p50 {result['batch_accept_s']['p50']:.3f} s, "
              f"max {result['batch_accept_s']['max']:.3f} s (goal < 1 s)")
    else:
        result["job_accept_p50_ms"] = round(1000 * statistics.median(times), 2)
    for kind, size in usage.items():
        print(f"    {kind:<28} {size:>9} bytes")
    print(f"P6 {args.jobs} queued jobs: {per_job:.0f} bytes of Redis memory each, broker messages included "
          f"({queued} messages in the broker's lists; goal <= 2048 bytes)")
    record(f"p6-scale-{args.via}" + (f"-{args.baseline}" if args.baseline else ""), result)


if __name__ == "__main__":
    main()
