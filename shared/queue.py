"""The Celery app both sides share: configuration only; the worker registers the tasks."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from shared import names
from shared.settings import Settings


def make_celery(settings: Settings) -> Celery:
    """A Celery app configured for long GPU tasks on the Redis broker."""
    app = Celery("samq", broker=settings.broker, set_as_current=False)
    app.conf.update(
        task_queues=[Queue(q) for q in (*names.INFER_QUEUES, names.QUEUE_WEBHOOKS)],
        task_default_queue=names.QUEUE_NORMAL,
        task_ignore_result=True,  # job state lives in the job store, not a result backend
        task_acks_late=True,  # ack after the task ends, so a lost worker's job is redelivered
        task_reject_on_worker_lost=True,
        task_time_limit=settings.task_time_limit_s,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # Redelivery of unacked messages; must exceed the longest job or it runs twice.
            "visibility_timeout": settings.visibility_timeout_s,
            # Poll the queues in the order given (high first) rather than round robin.
            "queue_order_strategy": "priority",
        },
        task_serializer="json",
        accept_content=["json"],
    )
    return app


def enqueue_segment(app: Celery, job_id: str, queue: str = names.QUEUE_NORMAL) -> None:
    """Send a job id (never image bytes) to the inference queue."""
    app.send_task(names.TASK_SEGMENT, args=[job_id], queue=queue)


def enqueue_segments(app: Celery, job_ids: list[str], queue: str) -> None:
    """Send many job ids to one queue in one Redis round trip (kombu's publish batch: one pipeline)."""
    with app.producer_or_acquire() as producer, producer.batch(max_size=max(len(job_ids), 1)):
        for job_id in job_ids:
            app.send_task(names.TASK_SEGMENT, args=[job_id], queue=queue, producer=producer)
