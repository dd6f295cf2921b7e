"""The connections a gateway process shares between requests."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery
from flask import current_app

from gateway.waiter import CompletionWaiter
from shared import outbox
from shared.celery_apps import make_celery, make_webhook_celery
from shared.credits import Credits
from shared.jobs import JobStore
from shared.keys import KeyStore
from shared.redis_client import connect
from shared.settings import Settings
from shared.storage import Storage, make_storage


@dataclass
class Services:
    """Settings plus every client the routes need."""

    settings: Settings
    redis: redis.Redis
    keys: KeyStore
    credits: Credits
    jobs: JobStore
    storage: Storage
    celery: Celery
    webhook_celery: Celery  # publishes webhook deliveries, on their own broker keyspace
    waiter: CompletionWaiter  # wakes drop-in calls waiting on their jobs (one pub/sub connection)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Create the clients (connections open lazily)."""
        client = connect(settings, health_check_interval=30)
        webhook_celery = make_webhook_celery(settings)
        return cls(
            settings=settings, redis=client, keys=KeyStore(client), credits=Credits(client),
            jobs=JobStore(client, settings.retention_s, outbox.publisher(webhook_celery, client),
                          min_replicas=settings.redis_min_replicas, wait_timeout_ms=settings.redis_wait_timeout_ms),
            storage=make_storage(settings), celery=make_celery(settings), webhook_celery=webhook_celery,
            waiter=CompletionWaiter(client),
        )


def services() -> Services:
    """The current app's services."""
    return current_app.extensions["samq"]
