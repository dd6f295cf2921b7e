"""Every Redis key and broker name samq uses, in one place."""

from __future__ import annotations

PREFIX = "samq"

QUEUE_HIGH = "samq.infer.high"
QUEUE_NORMAL = "samq.infer.normal"
QUEUE_LOW = "samq.infer.low"
INFER_QUEUES = (QUEUE_HIGH, QUEUE_NORMAL, QUEUE_LOW)
QUEUE_WEBHOOKS = "samq.webhooks"
TASK_SEGMENT = "samq.segment"
TASK_DELIVER = "samq.deliver_webhook"
PRIORITY_QUEUES = {"high": QUEUE_HIGH, "normal": QUEUE_NORMAL, "low": QUEUE_LOW}


def api_key(key_hash: str) -> str:
    """Hash describing one API key (name, created, disabled)."""
    return f"{PREFIX}:key:{key_hash}"


def credits(key_id: str) -> str:
    """Integer credit balance of a key."""
    return f"{PREFIX}:credits:{key_id}"


def hold(job_id: str) -> str:
    """Credits reserved for a job; deleted on commit or refund."""
    return f"{PREFIX}:hold:{job_id}"


def active(key_id: str) -> str:
    """Count of a key's accepted jobs that have not yet ended (bounds per-key queueing)."""
    return f"{PREFIX}:active:{key_id}"


def job(job_id: str) -> str:
    """Hash with one job's record."""
    return f"{PREFIX}:job:{job_id}"


def params(job_id: str) -> str:
    """JSON of a job's prompt and options, beside its hash (which stays small enough for compact encoding)."""
    return f"{PREFIX}:params:{job_id}"


def job_done(job_id: str) -> str:
    """Pub/sub channel announcing a job reached a terminal state."""
    return f"{PREFIX}:done:{job_id}"


def rate(key_id: str, window: int) -> str:
    """Request counter of a key for one minute window."""
    return f"{PREFIX}:rate:{key_id}:{window}"


# Sorted set of worker hostnames, scored by their last heartbeat (epoch s).
WORKERS = f"{PREFIX}:workers"


def worker(hostname: str) -> str:
    """Hash of one worker's activity (busy_since, idle_since: epoch s), read by its liveness probe."""
    return f"{PREFIX}:worker:{hostname}"

# Sorted set (score: created time) of jobs recorded but not yet handed to the broker.
UNSENT = f"{PREFIX}:unsent"

# Sorted set (score: epoch s when the lease ends) of running jobs: START writes the entry, the holding worker's
# heartbeat moves it on, FINISH removes it; any worker's heartbeat takes back jobs whose lease lapsed.
LEASES = f"{PREFIX}:leases"


def waiting(queue: str) -> str:
    """Sorted set (score: enqueue time) of jobs sent to `queue` and not yet started, in broker order."""
    return f"{PREFIX}:waiting:{queue}"


# Hash of counters since the store began: jobs accepted and finished by status (for /metrics).
STATS = f"{PREFIX}:stats"


def batch(batch_id: str) -> str:
    """Hash with one batch's record and its per-status counters."""
    return f"{PREFIX}:batch:{batch_id}"


def batch_jobs(batch_id: str) -> str:
    """List of a batch's job ids, in submission order."""
    return f"{PREFIX}:batch:{batch_id}:jobs"


def idempotency(key_id: str, idem_key: str) -> str:
    """The first answer given to one Idempotency-Key of one API key."""
    return f"{PREFIX}:idem:{key_id}:{idem_key}"


# Sorted set (score: epoch s) of webhook events written atomically with the job change that caused them,
# removed once handed to the broker; members are the events' JSON. A sweeper resends old entries.
OUTBOX = f"{PREFIX}:outbox"


def deliveries(job_or_batch_id: str) -> str:
    """List of webhook delivery attempts (JSON) of one job or batch, kept as long as the job."""
    return f"{PREFIX}:deliveries:{job_or_batch_id}"


# Sorted set (score: epoch s of expiry) of storage prefixes to delete when their job's retention ends.
EXPIRING = f"{PREFIX}:expiring"

# Sorted set (score: epoch s when due) of webhook attempts waiting for their retry; members are JSON
# {"event": ..., "attempt": n}. The webhook worker sends due ones to the broker (never a Celery countdown,
# which the Redis broker would hold unacked and redeliver twice once past its visibility timeout).
WEBHOOK_RETRIES = f"{PREFIX}:webhooks:retries"

# kombu prefixes every broker key of the webhook Celery app with this, so its short visibility timeout
# restores only webhook deliveries, never a long GPU task (kombu restores unacked messages keyspace-wide).
WEBHOOK_BROKER_PREFIX = f"{PREFIX}.webhooks:"


def webhook_disabled(key_id: str) -> str:
    """Hash (url: epoch s) of a key's webhook URLs disabled after a 410 answer."""
    return f"{PREFIX}:webhooks:disabled:{key_id}"
