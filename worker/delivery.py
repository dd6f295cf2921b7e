"""One webhook attempt: build the signed body, POST it to the checked address, log it, schedule what follows."""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import redis
import urllib3

from shared import names, outbox, webhooks
from shared.batches import batch_view, get_batch
from shared.errors import FetchFailed, SamqError
from shared.fetch import pinned_pool
from shared.jobs import JobStore
from shared.settings import Settings
from shared.storage import Storage
from shared.views import public_job
from shared.webhooks import Event

log = logging.getLogger(__name__)
JITTER = 0.1  # each retry delay is scaled by a random factor in [0.9, 1.1], so failed receivers are not hit in step
MAX_RETRY_AFTER_S = 24 * 3600


@dataclass(frozen=True)
class Answer:
    """What one POST came to: an HTTP status, or an error; and whether to try again."""

    status: int | None
    error: str | None
    retry: bool
    retry_after_s: float = 0.0


def iso(epoch: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def retry_after(value: str | None) -> float:
    """Seconds a Retry-After header asks for (delta seconds or an HTTP date); 0 when absent or unreadable."""
    if not value:
        return 0.0
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        pass
    try:
        return min(max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0), MAX_RETRY_AFTER_S)
    except (TypeError, ValueError):
        return 0.0


def post(url: str, body: bytes, headers: dict[str, str], settings: Settings) -> Answer:
    """POST once to the address the SSRF guard checked; no redirects followed, one timeout per phase."""
    try:
        target = webhooks.check_webhook_url(url, settings)
    except FetchFailed as exc:  # the name does not resolve now: maybe later
        return Answer(None, exc.message, retry=True)
    except SamqError as exc:  # refused (private address, bad URL): it will not change
        return Answer(None, exc.message, retry=False)
    timeout = urllib3.Timeout(connect=settings.webhook_timeout_s, read=settings.webhook_timeout_s)
    pool = pinned_pool(target, timeout)
    try:
        resp = pool.urlopen("POST", target.path, body=body, headers={**headers, "Host": target.host_header},
                            redirect=False, preload_content=False, assert_same_host=False)
        resp.release_conn()  # the body is not read: only the status counts
    except urllib3.exceptions.TimeoutError:
        return Answer(None, f"timed out after {settings.webhook_timeout_s:g} s", retry=True)
    except urllib3.exceptions.HTTPError as exc:
        return Answer(None, f"connection failed ({exc.__class__.__name__})", retry=True)
    finally:
        pool.close()
    status = resp.status
    if 200 <= status < 300:
        return Answer(status, None, retry=False)
    if 300 <= status < 400:
        return Answer(status, f"redirect to {resp.headers.get('Location', '?')} not followed", retry=False)
    if status == 429 or status >= 500:
        return Answer(status, None, retry=True, retry_after_s=retry_after(resp.headers.get("Retry-After")))
    return Answer(status, None, retry=False)  # 410 and the other 4xx: the receiver does not want it


class Deliverer:
    """Delivers webhook attempts; one per webhook worker process, shared by its threads."""

    def __init__(self, settings: Settings, client: redis.Redis, storage: Storage) -> None:
        self.settings = settings
        self.client = client
        self.storage = storage
        self.jobs = JobStore(client, settings.retention_s)

    def data(self, event: Event) -> dict[str, Any] | None:
        """The job (as GET /v1/jobs/<id> shows it) or batch the event is about; None once it expired."""
        s = self.settings
        if event.job_id:
            job = self.jobs.get(event.job_id)
            return public_job(job, self.storage, s.base_url, s.presign_expires_s) if job else None
        batch = get_batch(self.client, event.batch_id or "")
        return batch_view(batch, s.base_url) if batch else None

    def body(self, event: Event) -> bytes | None:
        """The JSON body of an event, built from the record's current state; None once it expired."""
        data = self.data(event)
        if data is None:
            return None
        return json.dumps({"type": event.type, "timestamp": iso(event.at), "data": data},
                          separators=(",", ":")).encode()

    def deliver(self, raw: str, attempt: int) -> None:
        """Make attempt number `attempt` (from 1) of the event, log it, and schedule the next one if due."""
        event = Event.parse(raw)
        subject_key = names.job(event.job_id) if event.job_id else names.batch(event.batch_id or "")
        record: dict[str, Any] = {"attempt": attempt, "event": event.id, "type": event.type, "url": event.url,
                                  "event_at": event.at, "at": iso(time.time())}
        if webhooks.is_disabled(self.client, event.key_id, event.url):
            log.info("webhook %s to %s dropped: the URL is disabled (it answered 410)", event.id, event.url)
            webhooks.log_attempt(self.client, subject_key, event.subject,
                                 {**record, "status": None, "error": "url disabled after 410", "duration_ms": 0},
                                 self.settings.retention_s)
            return
        body = self.body(event)
        if body is None:
            log.warning("webhook %s dropped: %s expired", event.id, event.subject)
            return
        now = int(time.time())
        headers = {
            "Content-Type": "application/json", "User-Agent": "samq-webhooks/0.1",
            "webhook-id": event.id, "webhook-timestamp": str(now),
            "webhook-signature": webhooks.sign(webhooks.signing_secrets(self.client, event.key_id), event.id, now,
                                               body),
        }
        started = time.monotonic()
        answer = post(event.url, body, headers, self.settings)
        record.update(status=answer.status, error=answer.error,
                      duration_ms=round((time.monotonic() - started) * 1000))
        schedule = self.settings.webhook_schedule
        if answer.status == 410:
            webhooks.disable_url(self.client, event.key_id, event.url)
            record["error"] = "410 Gone: URL disabled for this key"
        elif answer.retry and attempt < len(schedule):
            delay = max(schedule[attempt] * random.uniform(1 - JITTER, 1 + JITTER), answer.retry_after_s)
            record["next_attempt_at"] = iso(time.time() + delay)
            outbox.schedule_retry(self.client, raw, attempt + 1, time.time() + delay)
        webhooks.log_attempt(self.client, subject_key, event.subject, record, self.settings.retention_s)
        log.info("webhook %s %s attempt %d -> %s", event.id, event.type, attempt, answer.status or answer.error)
