"""`samq run`: one machine, one command. Redis if needed, storage, models, then the gateway and workers,
restarted with backoff when they die."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from shutil import which
from urllib.parse import urlparse

import redis
import requests

from shared import names, workers
from shared.redis_client import connect
from shared.settings import Settings
from shared.storage import make_storage
from shared.weights import download, get_preset, missing_files

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
    """One Celery worker process for one GPU (a thread per job slot, one device thread; high queue first)."""
    return [
        # --concurrency comes from SAMQ_WORKER_SLOTS (worker/celery_app.py), so the images' CMD can stay fixed.
        sys.executable, "-m", "celery", "-A", "worker.celery_app:app", "worker", "--pool", "threads",
        "--prefetch-multiplier", "1",
        "--queues", ",".join(names.INFER_QUEUES),
        "--hostname", f"{name}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
    ]


def ensure_redis(settings: Settings) -> tuple[str, subprocess.Popen | None]:
    """Use the Redis at redis_url if it answers, else start a local redis-server; describe which."""
    client = connect(settings, socket_connect_timeout=1)
    where = f"the primary of {settings.redis_sentinels}" if settings.redis_sentinels else settings.redis_url
    try:
        client.ping()
        return f"Redis at {where}", None
    except redis.RedisError:
        if settings.redis_sentinels:  # a fleet's Redis: never replaced by a local one
            raise SystemExit(f"samq: Redis does not answer at {where}") from None
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
            download(preset, settings.model_dir, token=settings.hf_token)
        except (requests.RequestException, OSError, ValueError) as exc:
            files = "\n  ".join(str(p) for p in missing)
            raise SystemExit(
                f"samq: the {preset.name} preset's weights are missing and could not be downloaded ({exc}):\n"
                f"  {files}\nRun `make models` where there is network, or start with "
                "SAMQ_MODELS=tiny-random for a smoke run (random weights, meaningless masks)."
            ) from None
    return preset.name


RESTART_BACKOFF_S = (1, 2, 4, 8, 16)  # wait before restart n after a fast crash; the sixth fast crash gives up
STABLE_AFTER_S = 60.0  # a child that ran this long was healthy: its next crash starts the backoff over


@dataclass
class Child:
    """One supervised process: its command, and how it has been crashing."""

    name: str
    command: list[str]
    proc: subprocess.Popen | None = None
    started: float = 0.0
    fast_crashes: int = 0
    restart_at: float | None = None

    def start(self) -> None:
        """Start (or restart) the process."""
        self.proc = subprocess.Popen(self.command)
        self.started = time.monotonic()
        self.restart_at = None


class GaveUp(Exception):
    """A child crashed too often, too fast: restarting it again would only loop."""


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def supervise_once(children: list[Child], on_death: Callable[[Child], None] = lambda c: None) -> None:
    """Restart children that died, with backoff; raises GaveUp after too many fast crashes in a row."""
    now = time.monotonic()
    for child in children:
        if child.restart_at is not None:
            if now >= child.restart_at:
                print(f"samq: restarting the {child.name}", file=sys.stderr, flush=True)
                child.start()
            continue
        if child.proc is None or child.proc.poll() is None:
            continue
        ran_s = now - child.started
        child.fast_crashes = 0 if ran_s >= STABLE_AFTER_S else child.fast_crashes + 1
        if child.fast_crashes > len(RESTART_BACKOFF_S):
            raise GaveUp(f"samq: the {child.name} crashed {child.fast_crashes} times in a row, each within "
                         f"{STABLE_AFTER_S:g} s of starting (last: {_how(child.proc.returncode)}); giving up. "
                         "Its output above says why.")
        delay = RESTART_BACKOFF_S[max(child.fast_crashes - 1, 0)]
        print(f"samq: the {child.name} stopped ({_how(child.proc.returncode)}) after {ran_s:.1f} s; "
              f"restarting it in {delay} s", file=sys.stderr, flush=True)
        on_death(child)
        child.restart_at = now + delay


def _wait_ready(settings: Settings, procs: list[subprocess.Popen], timeout_s: float = 600) -> None:
    client = connect(settings)
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


def children(settings: Settings) -> list[Child]:
    """What `samq run` starts and keeps running."""
    return [Child("gateway", gateway_command(settings)), Child("worker", worker_command(settings)),
            Child("webhook worker", webhook_command(settings))]


def run(settings: Settings) -> int:
    """Start everything, print the ready line, restart what dies, stop everything on Ctrl-C or SIGTERM."""
    preset = ensure_models(settings)
    redis_note, redis_proc = ensure_redis(settings)
    storage = make_storage(settings)
    storage.ensure(settings.lifecycle_days)
    if settings.storage.startswith("file://"):
        Path(settings.storage.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    kids = children(settings)
    for child in kids:
        child.start()

    def _stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)  # also when started in the background, where SIGINT is ignored
    code = 0
    try:
        _wait_ready(settings, [c.proc for c in kids if c.proc])
        print(f"samq ready: http://{settings.host}:{settings.port}  ({redis_note}; storage {settings.storage}; "
              f"models {preset})", flush=True)
        while redis_proc is None or redis_proc.poll() is None:
            # A dead worker's jobs come back through their leases (worker/runtime.py): the restarted worker's
            # heartbeat claims them once their lease lapses, as any worker's would; nothing to do here.
            supervise_once(kids)
            time.sleep(0.5)
        code = 1
        print("samq: the redis-server samq started stopped (its data is gone); stopping the rest", file=sys.stderr)
    except KeyboardInterrupt:
        print("samq: stopping", flush=True)
    except (SystemExit, GaveUp) as exc:
        print(exc, file=sys.stderr)
        code = 1
    finally:
        started = [c.proc for c in kids if c.proc] + ([redis_proc] if redis_proc else [])
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
