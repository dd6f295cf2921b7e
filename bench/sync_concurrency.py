"""P7: how many drop-in calls one gateway holds open at once before latency climbs.

Run: `python bench/sync_concurrency.py [--levels 8,16,32,48,64,96] [--threads 16,64] [--redis-url URL]`
The gateway alone is measured: a worker heartbeat is written by this script and no worker consumes, so
every call waits its full sync timeout (SAMQ_SYNC_TIMEOUT_S=3) and answers 202. With C callers at once,
a gateway that holds them all answers each in ~3 s; past its capacity (processes x threads) the rest
queue behind and take a multiple of that. Meanwhile GET /healthz is timed to see if the gateway stays
responsive. Default settings (2 processes x 16 threads) vs the threads given.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from common import PHOTO, add_redis_arg, bench_stack, percentile, record

from shared import workers

TIMEOUT_S = 3.0


def burst(url: str, key: str, body: dict, callers: int) -> dict:
    """`callers` drop-in calls at once; their durations, and /healthz latency meanwhile."""
    stop = threading.Event()
    health: list[float] = []

    def probe() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                requests.get(url + "/healthz", timeout=30)
                health.append(time.perf_counter() - start)
            except requests.RequestException:
                health.append(30.0)
            time.sleep(0.2)

    def call(_: int) -> tuple[float, int]:
        start = time.perf_counter()
        r = requests.post(url + "/v1/sam-v2-image", json=body, headers={"x-api-key": key}, timeout=120)
        return time.perf_counter() - start, r.status_code

    prober = threading.Thread(target=probe)
    prober.start()
    with ThreadPoolExecutor(max_workers=callers) as pool:
        results = list(pool.map(call, range(callers)))
    stop.set()
    prober.join()
    durations = [d for d, _ in results]
    return {"callers": callers, "p50_s": round(statistics.median(durations), 2),
            "max_s": round(max(durations), 2), "statuses": sorted({s for _, s in results}),
            "healthz_p95_ms": round(1000 * percentile(health, 95), 1) if health else None}


def main() -> None:
    """Each thread setting: raise the number of simultaneous callers until calls wait beyond the timeout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="8,16,32,48,64,96")
    parser.add_argument("--threads", default="16,64", help="gunicorn threads per process to compare")
    parser.add_argument("--processes", type=int, default=2)
    add_redis_arg(parser)
    args = parser.parse_args()
    body = {"image": base64.b64encode(PHOTO.read_bytes()).decode(), "coordinates": [[320, 200]]}
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        env = {"SAMQ_GATEWAY_WORKERS": str(args.processes), "SAMQ_GATEWAY_THREADS": str(threads),
               "SAMQ_SYNC_TIMEOUT_S": str(TIMEOUT_S), "SAMQ_WORKER_HEARTBEAT_S": "600"}
        with bench_stack(args.redis_url, 9, None, **env) as stack:
            workers.announce(stack.redis, "bench-holder")  # counts as alive; nothing consumes
            key = stack.new_key(10**6)
            for callers in (int(c) for c in args.levels.split(",")):
                row = {"processes": args.processes, "threads": threads, **burst(stack.url, key, body, callers)}
                rows.append(row)
                print(f"P7 {args.processes}x{threads} threads, {callers:3d} callers: call p50 {row['p50_s']:.2f} s, "
                      f"max {row['max_s']:.2f} s (timeout {TIMEOUT_S} s), statuses {row['statuses']}, "
                      f"healthz p95 {row['healthz_p95_ms']} ms")
    record("p7-sync-concurrency", {"sync_timeout_s": TIMEOUT_S, "rows": rows})


if __name__ == "__main__":
    main()
