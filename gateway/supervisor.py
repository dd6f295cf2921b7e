"""`samq run`: one machine, one command. Redis if needed, storage, models, gateway and one worker."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from shutil import which
from urllib.parse import urlparse

import redis
import requests

from shared import names, workers
from shared.models import download, get_preset, missing_files
from shared.settings import Settings
from shared.storage import make_storage

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def gateway_command(settings: Settings) -> list[str]:
    """gunicorn serving the gateway (threads, since the drop-in call waits on its job).

    The app writes its own access lines (with request ids), so gunicorn's access log stays off.
    """
    return [
        sys.executable, "-m", "gunicorn", "gateway.wsgi:app", "--bind", f"{settings.host}:{settings.port}",
        "--workers", str(settings.gateway_workers), "--threads", str(settings.gateway_threads),
        "--worker-class", "gthread", "--timeout", str(int(settings.sync_timeout_s) + 30),
        "--config", "python:gateway.gunicorn_conf",
    ]


def worker_command(settings: Settings, name: str = "samq-worker") -> list[str]:
    """One Celery worker process for one GPU (solo pool, one job at a time, high queue first)."""
    return [
        sys.executable, "-m", "celery", "-A", "worker.celery_app:app", "worker", "--pool", "solo",
        "--concurrency", "1", "--prefetch-multiplier", "1", "--queues", ",".join(names.INFER_QUEUES),
        "--hostname", f"{name}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
    ]


def ensure_redis(settings: Settings) -> tuple[str, subprocess.Popen | None]:
    """Use the Redis at redis_url if it answers, else start a local redis-server; describe which."""
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1)
    try:
        client.ping()
        return f"Redis at {settings.redis_url}", None
    except redis.RedisError:
        pass
    url = urlparse(settings.redis_url)
    host, port = url.hostname or "127.0.0.1", url.port or 6379
    server = which("redis-server")
    if host not in LOCAL_HOSTS or server is None:
        raise SystemExit(f"samq: Redis does not answer at {settings.redis_url} and no local redis-server to start")
    proc = subprocess.Popen(
        [server, "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no",
         "--maxmemory-policy", "noeviction"], stdout=subprocess.DEVNULL,
    )
    for _ in range(50):
        try:
            client.ping()
            return f"redis-server started by samq on {host}:{port} (nothing persisted)", proc
        except redis.RedisError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("samq: started redis-server but it does not answer")


def ensure_models(settings: Settings) -> str:
    """Make sure the preset's weights are on disk (downloading them on first run); describe the preset."""
    preset = get_preset(settings.models, settings.detector)
    if preset.random:
        return f"{preset.name} (RANDOM WEIGHTS: masks mean nothing)"
    missing = missing_files(preset, settings.model_dir)
    if missing:
        print(f"samq: first run: downloading the {preset.name} preset into {settings.model_dir} ...", flush=True)
        try:
            download(preset, settings.model_dir)
        except (requests.RequestException, OSError, ValueError) as exc:
            files = "\n  ".join(str(p) for p in missing)
            raise SystemExit(
                f"samq: the {preset.name} preset's weights are missing and could not be downloaded ({exc}):\n"
                f"  {files}\nRun `make models` where there is network, or start with "
                "SAMQ_MODELS=tiny-random for a smoke run (random weights, meaningless masks)."
            ) from None
    return preset.name


def _wait_ready(settings: Settings, procs: list[subprocess.Popen], timeout_s: float = 600) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    deadline = time.monotonic() + timeout_s
    url = f"http://{settings.host}:{settings.port}/healthz"
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise SystemExit("samq: a process exited during start-up (see its output above)")
        try:
            up = requests.get(url, timeout=1).ok
        except requests.RequestException:
            up = False
        if up and workers.alive(client, settings.worker_heartbeat_s):
            return
        time.sleep(0.5)
    raise SystemExit("samq: gateway or worker did not become ready in time")


def run(settings: Settings) -> int:
    """Start everything, print the ready line, stop everything on Ctrl-C or SIGTERM."""
    preset = ensure_models(settings)
    redis_note, redis_proc = ensure_redis(settings)
    storage = make_storage(settings)
    storage.ensure(settings.lifecycle_days)
    if settings.storage.startswith("file://"):
        Path(settings.storage.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    procs = [subprocess.Popen(gateway_command(settings)), subprocess.Popen(worker_command(settings))]
    started = procs + ([redis_proc] if redis_proc else [])

    def _stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)  # also when started in the background, where SIGINT is ignored
    code = 0
    try:
        _wait_ready(settings, procs)
        print(f"samq ready: http://{settings.host}:{settings.port}  ({redis_note}; storage {settings.storage}; "
              f"models {preset})", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        code = 1
        print("samq: a process stopped; stopping the rest", file=sys.stderr)
    except KeyboardInterrupt:
        print("samq: stopping", flush=True)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        code = 1
    finally:
        for proc in reversed(started):
            if proc.poll() is None:
                proc.terminate()
        for proc in started:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    return code


def webhook_command(settings: Settings, name: str = "samq-webhooks") -> list[str]:
    """The webhook delivery worker: a CPU process with many threads, since each attempt mostly waits."""
    return [
        sys.executable, "-m", "celery", "-A", "worker.webhook_app:app", "worker", "--pool", "threads",
        "--concurrency", "32", "--queues", names.QUEUE_WEBHOOKS, "--hostname", f"{name}@%h", "--loglevel", "INFO",
        "--without-gossip", "--without-mingle",
    ]
