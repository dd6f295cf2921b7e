"""How many slow clients (headers sent a line at a time, never finished) it takes to starve a gateway.

Run: `PYTHONPATH=$PWD .venv/bin/python bench/slowloris.py [--proxy] 4 8 16` (needs the test Redis,
SAMQ_TEST_REDIS_PORT). Starts one gunicorn gateway as the test stacks do (1 process, 8 threads), then for each N
holds N unfinished requests open and times a /healthz call beside them. gthread hands each connection to a thread
that reads the request, so N >= threads starves it. `--proxy` puts the shipped buffering proxy in front (Debian's
nginx running deploy/nginx/samq.conf as deploy/validate.py's nginx_config includes it: one worker process of 1024
connections) and sends the slow clients and the call to it instead (docs/DEPLOY.md, "Slow clients").
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
import tempfile
import time
from pathlib import Path

import requests

from harness.procs import free_port, start, stop, wait_until
from harness.stack import new_stack

ROOT = Path(__file__).resolve().parents[1]


def load_validate():
    """deploy/validate.py (a script, not a package): its nginx_config and nginx_binary."""
    spec = importlib.util.spec_from_file_location("deploy_validate", ROOT / "deploy" / "validate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start_nginx(upstream_port: int, workdir: Path):
    """nginx with samq.conf in front of 127.0.0.1:upstream_port; (process, base URL)."""
    validate = load_validate()
    nginx = validate.nginx_binary()
    if nginx is None:
        raise SystemExit("--proxy needs nginx (Debian: apt-get install nginx)")
    workdir.mkdir(parents=True)
    workdir.chmod(0o755)  # nginx's workers run as nobody when this runs as root
    port = free_port()
    conf = validate.nginx_config(workdir, upstream=f"127.0.0.1:{upstream_port}", listen=f"127.0.0.1:{port}")
    proc = start([nginx, "-e", str(workdir / "error.log"), "-c", str(conf), "-g", "daemon off;"], {},
                 workdir / "access.log")
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(url + "/nginx-healthz", timeout=1).ok, 20, "nginx")
    return proc, url


def main(counts: list[int], proxy: bool) -> None:
    """Print, for each number of slow clients, what a normal call beside them gets."""
    tmp = Path(tempfile.mkdtemp(prefix="samq-slowloris-"))
    stack = new_stack(4, tmp, tmp / "models", None)
    stack.start_gateway()
    threads = stack.settings.gateway_workers * stack.settings.gateway_threads
    nginx, url = None, stack.url
    try:
        if proxy:
            nginx, url = start_nginx(int(stack.env["SAMQ_PORT"]), tmp / "nginx")
        port = int(url.rsplit(":", 1)[1])
        route = "through nginx" if proxy else "direct"
        for n in counts:
            slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
            for sock in slow:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: samq\r\n")  # and never the blank line
            time.sleep(1)
            start_s = time.monotonic()
            try:
                outcome = f"HTTP {requests.get(url + '/healthz', timeout=30).status_code}"
            except requests.RequestException as exc:
                outcome = exc.__class__.__name__
            print(f"{n:4d} slow clients, {threads} gateway threads, {route}: /healthz -> {outcome} "
                  f"in {time.monotonic() - start_s:.3f} s", flush=True)
            for sock in slow:
                sock.close()
            time.sleep(1)
    finally:
        if nginx is not None:
            stop(nginx)
        stack.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("counts", nargs="*", type=int, default=[4, 8, 16], help="numbers of slow clients")
    parser.add_argument("--proxy", action="store_true", help="through nginx running deploy/nginx/samq.conf")
    args = parser.parse_args()
    main(args.counts, args.proxy)
