"""How many slow clients (headers sent a line at a time, never finished) it takes to starve a gateway.

Run: `PYTHONPATH=$PWD .venv/bin/python bench/slowloris.py 4 8 16` (needs the test Redis, SAMQ_TEST_REDIS_PORT).
Starts one gunicorn gateway as the test stacks do (1 process, 8 threads), then for each N holds N unfinished
requests open and times a /healthz call beside them. gthread hands each connection to a thread that reads
the request, so N >= threads starves it: put a buffering reverse proxy in front (see docs/RELIABILITY.md).
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.stack import new_stack


def main(counts: list[int]) -> None:
    """Print, for each number of slow clients, what a normal call beside them gets."""
    tmp = Path(tempfile.mkdtemp(prefix="samq-slowloris-"))
    stack = new_stack(4, tmp, tmp / "models", None)
    stack.start_gateway()
    port = int(stack.env["SAMQ_PORT"])
    threads = stack.settings.gateway_workers * stack.settings.gateway_threads
    try:
        for n in counts:
            slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
            for sock in slow:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: samq\r\n")  # and never the blank line
            time.sleep(1)
            start = time.monotonic()
            try:
                outcome = f"HTTP {requests.get(stack.url + '/healthz', timeout=30).status_code}"
            except requests.RequestException as exc:
                outcome = exc.__class__.__name__
            print(f"{n:4d} slow clients, {threads} gateway threads: /healthz -> {outcome} "
                  f"in {time.monotonic() - start:.2f} s", flush=True)
            for sock in slow:
                sock.close()
            time.sleep(1)
    finally:
        stack.stop()


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [4, 8, 16])
