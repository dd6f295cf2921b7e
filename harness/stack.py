"""A real samq deployment on loopback: gunicorn gateway + celery worker processes, Redis, an S3 server."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis
import requests

from gateway.supervisor import gateway_command, webhook_command, worker_command
from harness.photos import ROCKET_JPG
from harness.procs import free_port, start, stop, wait_until
from shared import names, workers
from shared.celery_apps import make_celery
from shared.keys import KeyStore, hash_key
from shared.settings import Settings
from shared.storage import make_storage

# The Redis server the stacks use (each on a database of its own): .ci/run and `make test` start one on 6379.
REDIS_HOST = os.environ.get("SAMQ_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("SAMQ_TEST_REDIS_PORT", "6379"))
WORKER_START_S = 180


@dataclass
class Stack:
    """One gateway and its workers on their own Redis database."""

    env: dict[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)  # worker name -> its /metrics port

    @property
    def settings(self) -> Settings:
        """The settings the processes see."""
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            return Settings()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        return f"http://127.0.0.1:{self.env['SAMQ_PORT']}"

    @property
    def redis(self) -> redis.Redis:
        """A client on the stack's Redis database."""
        return redis.Redis.from_url(self.env["SAMQ_REDIS_URL"])

    def start_gateway(self) -> None:
        """Start gunicorn and wait for /healthz."""
        self.procs["gateway"] = start(gateway_command(self.settings), self.env, self.logs / "gateway.log")
        wait_until(lambda: requests.get(self.url + "/healthz", timeout=1).ok, 60, "gateway /healthz")

    def start_worker(self, name: str = "w1", **extra_env: str) -> subprocess.Popen:
        """Start a celery worker process (serving /metrics on a port of its own) and wait until it announces itself."""
        self.metrics_ports[name] = free_port()
        env = {**self.env, "SAMQ_WORKER_METRICS_PORT": str(self.metrics_ports[name]), **extra_env}
        proc = start(worker_command(self.settings, name=name), env, self.logs / f"worker-{name}.log")
        self.procs[name] = proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"worker {name} exited: see {self.logs}/worker-{name}.log")
            return any(h.startswith(f"{name}@") for h in workers.alive(self.redis, 1.0))

        wait_until(ready, WORKER_START_S, f"worker {name} heartbeat", interval_s=0.3)
        return proc

    def start_webhook_worker(self, name: str = "webhooks") -> subprocess.Popen:
        """Start the webhook delivery worker and wait until Celery says it is ready."""
        log = self.logs / f"worker-{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        proc = start(webhook_command(self.settings, name=name), self.env, log)
        self.procs[name] = proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"webhook worker {name} exited: see {log}")
            return b"samq webhook worker ready" in log.read_bytes()[offset:]

        wait_until(ready, 60, f"webhook worker {name}", interval_s=0.2)
        return proc

    def worker_metrics(self, name: str) -> str:
        """A worker's /metrics page."""
        return requests.get(f"http://127.0.0.1:{self.metrics_ports[name]}/metrics", timeout=10).text

    @contextmanager
    def paused(self, name: str = "w1") -> Iterator[None]:
        """Worker `name` stops taking jobs (its process and heartbeat go on), then takes them again."""
        host = next(h for h in workers.alive(self.redis, 60) if h.startswith(f"{name}@"))
        control = make_celery(self.settings).control
        for queue in names.INFER_QUEUES:
            control.cancel_consumer(queue, destination=[host], reply=True, timeout=10)
        try:
            yield
        finally:
            for queue in names.INFER_QUEUES:
                control.add_consumer(queue, destination=[host], reply=True, timeout=10)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill one process outright (no cleanup: the fault under test)."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop(self) -> None:
        """Stop everything this stack started."""
        for proc in self.procs.values():
            stop(proc)
        self.procs.clear()

    def new_key(self, credits: int = 10, name: str = "test") -> str:
        """Create an API key straight in Redis."""
        return KeyStore(self.redis).create(credits, name)

    def balance(self, raw_key: str) -> int:
        """A key's credits."""
        return KeyStore(self.redis).credits.balance(hash_key(raw_key))

    def post(self, path: str, body: object, key: str | None, timeout: float = 120, **kw) -> requests.Response:
        """POST JSON with the key."""
        headers = {"x-api-key": key} if key else {}
        headers.update(kw.pop("headers", {}))
        return requests.post(self.url + path, json=body, headers=headers, timeout=timeout, **kw)

    def get(self, path: str, key: str | None, **kw) -> requests.Response:
        """GET with the key."""
        headers = {"x-api-key": key} if key else {}
        headers.update(kw.pop("headers", {}))
        return requests.get(self.url + path, headers=headers, timeout=60, **kw)

    def job_count(self) -> int:
        """How many job records exist."""
        return sum(1 for _ in self.redis.scan_iter(match=names.job("*")))


def make_env(db: int, tmp: Path, models: Path, s3_endpoint: str | None, **overrides: str) -> dict[str, str]:
    """Environment for a stack on Redis database `db`."""
    env = {
        "SAMQ_REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}",
        "SAMQ_HOST": "127.0.0.1",
        "SAMQ_PORT": str(free_port()),
        "SAMQ_MODELS": "tiny-random",
        "SAMQ_MODEL_DIR": str(models),
        "SAMQ_GATEWAY_WORKERS": "1",
        "SAMQ_GATEWAY_THREADS": "8",
        "SAMQ_WORKER_HEARTBEAT_S": "1",
        "SAMQ_SYNC_TIMEOUT_S": "60",
        "SAMQ_MAX_IMAGE_BYTES": str(2 * 1024 * 1024),
        "SAMQ_MAX_IMAGE_PIXELS": "4000000",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "SAMQ_METRICS_DIR": str(tmp / f"metrics-{db}"),
    }
    if s3_endpoint:
        env.update(SAMQ_S3_ENDPOINT_URL=s3_endpoint, SAMQ_S3_BUCKET=f"samq-test-{db}", SAMQ_S3_ACCESS_KEY_ID="test",
                   SAMQ_S3_SECRET_ACCESS_KEY="test")
    else:
        env["SAMQ_STORAGE_URL"] = f"file://{tmp / f'storage-{db}'}"
    env.update(overrides)
    return env


def new_stack(db: int, tmp: Path, models: Path, s3_endpoint: str | None, **overrides: str) -> Stack:
    """A flushed database, a ready storage bucket, nothing started yet."""
    logs = tmp / f"logs-{db}"
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(make_env(db, tmp, models, s3_endpoint, **overrides), logs)
    stack.redis.flushdb()
    make_storage(stack.settings).ensure()
    return stack


@contextmanager
def running(stack: Stack, workers: dict[str, dict[str, str]] | None = None) -> Iterator[Stack]:
    """Start the workers (name: extra environment), then the gateway; stop everything afterwards."""
    try:
        for name, extra in (workers or {}).items():
            stack.start_worker(name, **extra)
        stack.start_gateway()
        yield stack
    finally:
        stack.stop()


def start_s3_server(tmp: Path) -> tuple[subprocess.Popen, str]:
    """moto's S3-compatible HTTP server on a free loopback port."""
    port = free_port()
    proc = start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], {}, tmp / "moto.log")
    endpoint = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(endpoint, timeout=1).status_code < 500, 60, "moto_server")
    return proc, endpoint


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve_directory(root: Path) -> tuple[ThreadingHTTPServer, str]:
    """A plain HTTP server for image URLs, on loopback."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"


class SlowPhoto(BaseHTTPRequestHandler):
    """Serves rocket.jpg after `pause()` seconds (`delay_s` unless a subclass decides per request): a job fetching
    it stays running meanwhile, however fast the worker is."""

    delay_s = 3.0

    def pause(self) -> float:
        """Seconds to wait before answering this request."""
        return self.delay_s

    def do_GET(self) -> None:
        time.sleep(self.pause())
        data = ROCKET_JPG.read_bytes()
        with contextlib.suppress(OSError):  # the worker that asked may be dead by now
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def serve_slow_photo(handler: type[SlowPhoto] = SlowPhoto, **attrs: object) -> tuple[ThreadingHTTPServer, str]:
    """A loopback server whose /rocket.jpg answers slowly (`attrs` override the handler's, e.g. delay_s=4)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), type(handler.__name__, (handler,), attrs))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"
