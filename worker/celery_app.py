"""Worker entry point: `celery -A worker.celery_app:app worker --pool threads ...` (SAMQ_WORKER_SLOTS threads).

The pool's threads carry one job each; the models run on the one device thread (worker/device.py).
"""

from __future__ import annotations

import logging
import sys

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_ready, worker_shutdown

from shared import logs
from shared.celery_apps import make_celery
from shared.settings import Settings
from worker import health, metrics
from worker.runtime import Runtime, worker_slots
from worker.tasks import register_tasks

log = logging.getLogger("samq.worker")


def create_worker_app(settings: Settings) -> Celery:
    """A Celery app with samq's tasks, loading models when the worker is ready."""
    app = make_celery(settings)
    app.conf.worker_concurrency = worker_slots(settings)  # the threads pool's size: jobs in flight
    rt = Runtime(settings, app)
    register_tasks(app, rt)

    logs.for_celery(settings.log_format)

    # Every line logged while a job runs, Celery's own included, carries its id and its request's (when sent).
    bindings: dict[str, list] = {}

    @task_prerun.connect(weak=False)
    def _bind(task_id: str = "", task=None, args: tuple = (), **_: object) -> None:
        request_id = getattr(task.request, "request_id", None) if task is not None else None
        bindings[task_id] = logs.bind(job_id=args[0] if args else None, request_id=request_id)

    @task_postrun.connect(weak=False)
    def _unbind(task_id: str = "", **_: object) -> None:
        if task_id in bindings:
            logs.unbind(bindings.pop(task_id))

    # What `python -m worker.health live` needs to tell a stuck consumer (celery#10205) from an idle one.
    activity: list[health.Activity] = [health.Activity(rt.redis, "")]  # replaced once the hostname is known

    @worker_ready.connect(weak=False)
    def _ready(sender=None, **_: object) -> None:
        # Load (or for tiny-random, build) the models before taking the first job.
        try:
            rt.models()
        except Exception as exc:  # a worker without its models must not take jobs
            log.critical("cannot load models: %s", exc)
            sys.exit(3)
        hostname = getattr(sender, "hostname", "") or ""
        rt.device()  # the device thread, before the first job
        activity[0] = health.Activity(rt.redis, hostname)
        rt.start_heartbeat(hostname)
        health.record_idle(rt.redis, hostname)
        metrics.serve(settings.host, settings.worker_metrics_port, lambda: rt.models().embedder)
        log.info("samq worker ready (preset %s)", settings.models)

    @task_prerun.connect(weak=False)
    def _busy(task_id: str = "", **_: object) -> None:
        activity[0].started(task_id)

    @task_postrun.connect(weak=False)
    def _idle(task_id: str = "", **_: object) -> None:
        activity[0].ended(task_id)

    @worker_shutdown.connect(weak=False)
    def _shutdown(**_: object) -> None:
        rt.stop_heartbeat()

    return app


app = create_worker_app(Settings())
