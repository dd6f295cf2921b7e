"""The two Celery apps (inference, webhook deliveries): configuration only; the worker registers the tasks.

Both reach the broker the way every Redis client does (shared.redis_client): SAMQ_BROKER_URL, SAMQ_REDIS_URL, or
kombu's Sentinel transport when SAMQ_REDIS_SENTINELS is set."""

from __future__ import annotations

import redis
from celery import Celery
from kombu import Queue
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis

from shared import logs, names
from shared.redis_client import broker_transport_options, broker_url
from shared.settings import Settings


class _SentinelChannel(kombu_redis.SentinelChannel):
    """kombu's Sentinel channel, surviving the loss of its primary.

    When a failover cuts the broker connection, Celery closes it, and closing a channel restores its unacknowledged
    messages through a new connection pool, built from the transport's client, which that close has already
    cleared: kombu 5.7.0's Sentinel channel then raises AttributeError, which stops the worker
    (tests/fault/test_sentinel_failover.py saw both workers exit). Raised as a connection error instead, Celery
    ignores it and reconnects; the messages stay in `unacked` until the visibility timeout restores them, and START
    skips those whose jobs ran meanwhile.
    """

    def _connparams(self, asynchronous: bool = False) -> dict:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection is closed (a failover)")
        return super()._connparams(asynchronous)


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Sentinel transport with the channel above; `sentinel://` URLs resolve to it (alternates included)."""

    Channel = _SentinelChannel


TRANSPORT_ALIASES["sentinel"] = f"{__name__}:SentinelTransport"


def make_celery(settings: Settings) -> Celery:
    """A Celery app configured for long GPU tasks on the Redis broker."""
    app = Celery("samq", broker=broker_url(settings), set_as_current=False)
    app.conf.update(
        task_queues=[Queue(q) for q in names.INFER_QUEUES],
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
            **broker_transport_options(settings),
        },
        task_serializer="json",
        accept_content=["json"],
    )
    return app


def make_webhook_celery(settings: Settings) -> Celery:
    """The webhook deliveries' Celery app, on its own broker keyspace: publishers and the webhook worker use it."""
    app = Celery("samq-webhooks", broker=broker_url(settings), set_as_current=False)
    app.conf.update(
        task_queues=[Queue(names.QUEUE_WEBHOOKS)],
        task_default_queue=names.QUEUE_WEBHOOKS,
        task_ignore_result=True,
        task_acks_late=True,  # a delivery in flight when its worker dies is delivered again (at-least-once)
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # reserve no more than the threads run: a waiting message would age unacked
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # kombu restores unacked messages of its whole keyspace: this prefix keeps the short timeout below
            # away from the GPU tasks, which must stay unacked for as long as a job runs.
            "global_keyprefix": names.WEBHOOK_BROKER_PREFIX,
            # One attempt lasts at most its connect and read timeouts; after this a lost worker's delivery returns.
            "visibility_timeout": 2 * settings.webhook_timeout_s + 5,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
            **broker_transport_options(settings),
        },
        task_serializer="json",
        accept_content=["json"],
    )
    return app


def enqueue_segment(app: Celery, job_id: str, queue: str = names.QUEUE_NORMAL) -> None:
    """Send a job id (never image bytes) to the inference queue."""
    app.send_task(names.TASK_SEGMENT, args=[job_id], queue=queue, headers=_log_headers())


def enqueue_segments(app: Celery, job_ids: list[str], queue: str) -> None:
    """Send many job ids to one queue in one Redis round trip (kombu's publish batch: one pipeline)."""
    headers = _log_headers()
    with app.producer_or_acquire() as producer, producer.batch(max_size=max(len(job_ids), 1)):
        for job_id in job_ids:
            app.send_task(names.TASK_SEGMENT, args=[job_id], queue=queue, producer=producer, headers=headers)


def _log_headers() -> dict[str, str] | None:
    """The id of the request being served, so the worker's lines about its jobs carry it too."""
    request_id = logs.current("request_id")
    return {"request_id": request_id} if request_id else None
