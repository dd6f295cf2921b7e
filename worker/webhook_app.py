"""Webhook worker entry point: `celery -A worker.webhook_app:app worker --pool threads --queues samq.webhooks`.

A CPU process apart from the GPU workers (no torch here): a receiver that hangs holds one of its threads,
never a GPU. Besides the delivery task it runs one thread that sends due retries and resends outbox events
whose publisher died.
"""

from __future__ import annotations

import logging
import threading

import redis
from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from shared import logs, names, outbox
from shared.celery_apps import make_webhook_celery
from shared.redis_client import connect
from shared.settings import Settings
from shared.storage import make_storage
from worker.delivery import Deliverer

log = logging.getLogger("samq.webhooks")
POLL_S = 0.5  # how often due retries and stranded outbox events are looked for


def pump(app: Celery, client: redis.Redis, stop: threading.Event) -> None:
    """Until stopped: send the retries that are due and the outbox events nobody published."""
    while not stop.is_set():
        try:
            outbox.release_due(app, client)
            outbox.sweep(app, client)
        except Exception:  # Redis or the broker away for a moment: the entries wait, nothing is lost
            log.exception("webhook pump failed; retrying")
        stop.wait(POLL_S)


def create_webhook_app(settings: Settings) -> Celery:
    """The webhook Celery app with its delivery task and the retry pump."""
    app = make_webhook_celery(settings)
    client = connect(settings, health_check_interval=30)
    deliverer = Deliverer(settings, client, make_storage(settings))
    stop = threading.Event()
    logs.for_celery(settings.log_format)

    @app.task(name=names.TASK_DELIVER, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
    def deliver(event: str, attempt: int = 1) -> None:
        deliverer.deliver(event, attempt)

    @worker_ready.connect(weak=False)
    def _ready(**_: object) -> None:
        threading.Thread(target=pump, args=(app, client, stop), name="samq-webhook-pump", daemon=True).start()
        log.info("samq webhook worker ready (schedule %s s)", settings.webhook_retry_schedule_s)

    @worker_shutdown.connect(weak=False)
    def _shutdown(**_: object) -> None:
        stop.set()

    return app


app = create_webhook_app(Settings())
