"""Many drop-in calls held open at once against the default gateway: are all answered, is any job lost?

Run: `PYTHONPATH=$PWD SAMQ_TEST_REDIS_PORT=6379 .venv/bin/python bench/held_calls.py 500` (needs the test Redis).
Starts a stack as the tests do but with the default gateway size (2 processes x 16 threads) and one worker,
fires N concurrent `POST /v1/sam-v2-image` calls of a small photo, and prints how they were answered
(200, or 202 once a call outlives SAMQ_SYNC_TIMEOUT_S), how long the last took, and whether every job
ended succeeded and was charged exactly once (the ledger check of harness/ledger.py).
"""

from __future__ import annotations

import base64
import collections
import io
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from PIL import Image

from harness.ledger import check_ledger, job_summary
from harness.photos import ROCKET_JPG
from harness.procs import wait_until
from harness.stack import new_stack, running


def main(n: int) -> None:
    """Fire n held calls and report."""
    tmp = Path(tempfile.mkdtemp(prefix="samq-held-"))
    stack = new_stack(3, tmp, tmp / "models", None, SAMQ_GATEWAY_WORKERS="2", SAMQ_GATEWAY_THREADS="16",
                      SAMQ_RATE_LIMIT_PER_MIN="0")
    buf = io.BytesIO()
    Image.open(ROCKET_JPG).convert("RGB").resize((320, 214)).save(buf, "JPEG")
    body = {"image": base64.b64encode(buf.getvalue()).decode(), "coordinates": "[160,100]"}
    with running(stack, {"wh": {}}):
        key = stack.new_key(n)

        def call(_: int) -> str:
            try:
                r = requests.post(stack.url + "/v1/sam-v2-image", json=body, headers={"x-api-key": key},
                                  timeout=600)
                return str(r.status_code)
            except requests.RequestException as exc:
                return exc.__class__.__name__

        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=n) as pool:
            answers = collections.Counter(pool.map(call, range(n)))
        answered_s = time.monotonic() - start
        wait_until(lambda: job_summary(stack.redis).get("succeeded", 0) == n, 900, "every job", interval_s=1)
        done_s = time.monotonic() - start
        check_ledger(stack.redis, {key: n})
        print(f"{n} held drop-in calls, gateway 2x16 threads, 1 worker: answers {dict(answers)}; "
              f"all answered in {answered_s:.1f} s; jobs {job_summary(stack.redis)} after {done_s:.1f} s; "
              f"balance {stack.balance(key)} (charged once each); ledger exact", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
