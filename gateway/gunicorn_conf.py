"""gunicorn settings for the gateway (`--config python:gateway.gunicorn_conf`): shared metrics, samq's log lines.

prometheus-client decides once, when first imported, whether metrics live in per-process files: the variable is
set here, in the master, before any worker process imports it.
"""

from __future__ import annotations

import os
import sys
from typing import Protocol

from shared import logs
from shared.settings import Settings

if "prometheus_client" in sys.modules:  # it has already chosen in-memory values: counts would not add up
    raise RuntimeError("gateway.gunicorn_conf must be loaded before prometheus_client is imported")
_settings = Settings()
METRICS_DIR = _settings.metrics_dir.resolve()
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(METRICS_DIR)

from prometheus_client import multiprocess  # noqa: E402  (after the variable, see above)

logconfig_dict = logs.config(_settings.log_format)


def on_starting(server: object) -> None:
    """Start from zero: files left by an earlier run would be added to this one's counts."""
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for stale in METRICS_DIR.glob("*.db"):  # only prometheus-client's files: the folder may hold others
        stale.unlink()


class _Worker(Protocol):  # what this hook reads of gunicorn's Worker (gunicorn ships no types)
    pid: int


def child_exit(server: object, worker: _Worker) -> None:
    """A worker process ended: its live gauges no longer count (its counters still do)."""
    multiprocess.mark_process_dead(worker.pid, str(METRICS_DIR))
