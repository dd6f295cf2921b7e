"""Every Redis key and broker name samq uses, in one place."""

from __future__ import annotations

PREFIX = "samq"

QUEUE_HIGH = "samq.infer.high"
QUEUE_NORMAL = "samq.infer.normal"
QUEUE_LOW = "samq.infer.low"
INFER_QUEUES = (QUEUE_HIGH, QUEUE_NORMAL, QUEUE_LOW)
QUEUE_WEBHOOKS = "samq.webhooks"
TASK_SEGMENT = "samq.segment"


def api_key(key_hash: str) -> str:
    """Hash describing one API key (name, created, disabled)."""
    return f"{PREFIX}:key:{key_hash}"


def credits(key_id: str) -> str:
    """Integer credit balance of a key."""
    return f"{PREFIX}:credits:{key_id}"


def hold(job_id: str) -> str:
    """Credits reserved for a job; deleted on commit or refund."""
    return f"{PREFIX}:hold:{job_id}"


def job(job_id: str) -> str:
    """Hash with one job's record."""
    return f"{PREFIX}:job:{job_id}"


def job_done(job_id: str) -> str:
    """Pub/sub channel announcing a job reached a terminal state."""
    return f"{PREFIX}:done:{job_id}"


def rate(key_id: str, window: int) -> str:
    """Request counter of a key for one minute window."""
    return f"{PREFIX}:rate:{key_id}:{window}"


# Sorted set of worker hostnames, scored by their last heartbeat (epoch s).
WORKERS = f"{PREFIX}:workers"

# Sorted set (score: created time) of jobs recorded but not yet handed to the broker.
UNSENT = f"{PREFIX}:unsent"


def waiting(queue: str) -> str:
    """Sorted set (score: enqueue time) of jobs sent to `queue` and not yet started, in broker order."""
    return f"{PREFIX}:waiting:{queue}"


# Hash of counters since the store began: jobs accepted and finished by status (for /metrics).
STATS = f"{PREFIX}:stats"
