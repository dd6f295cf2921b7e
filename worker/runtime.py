"""What one worker process holds: settings, Redis, storage, and (lazily) the models."""

from __future__ import annotations

import logging
import socket
import threading
import time

import redis
from celery import Celery
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from shared import outbox, workers
from shared.celery_apps import enqueue_segment, make_webhook_celery
from shared.jobs import JobStore
from shared.redis_client import connect
from shared.settings import Settings
from shared.storage import make_storage
from worker.device import Device
from worker.models.registry import Models, get_models, resolve_device
from worker.pipeline import Thresholds

log = logging.getLogger(__name__)

# A worker rides out a Redis restart (about a minute of retries, 2 s apart at most) rather than lose the
# outcome of a job it has finished: FINISH is idempotent, so retrying it is safe.
REDIS_RETRY = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=35)
CUDA_SLOTS, CPU_SLOTS = 8, 4  # SAMQ_WORKER_SLOTS=0 (auto): jobs in flight per worker


def worker_slots(settings: Settings) -> int:
    """Jobs one worker carries at once: on CUDA enough to fill an encoder batch while others are on the CPU."""
    return settings.worker_slots or (CUDA_SLOTS if resolve_device(settings.device) == "cuda" else CPU_SLOTS)


class Runtime:
    """Per-process worker state; nothing here touches the network or loads models at construction."""

    def __init__(self, settings: Settings, celery: Celery) -> None:
        self.settings = settings
        self.celery = celery
        self.redis = connect(settings, retry=REDIS_RETRY, retry_on_error=[redis.ConnectionError, redis.TimeoutError])
        # START and FINISH write webhook events to the outbox; they go to the webhook queue, never held here.
        self.jobs = JobStore(self.redis, settings.retention_s, outbox.publisher(make_webhook_celery(settings),
                                                                                 self.redis), settings.lease_s,
                             settings.redis_min_replicas, settings.redis_wait_timeout_ms)
        self.storage = make_storage(settings, settings.storage_max_attempts)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._device: Device | None = None
        # The runs this process carries (job id -> run, START's token): the heartbeat renews their leases.
        self._held: dict[str, int] = {}
        self._held_lock = threading.Lock()
        self._beat_ok_at = 0.0  # monotonic end of the last heartbeat that reached Redis in time

    def hold(self, job_id: str, run: int) -> None:
        """A task thread STARTed `run` of a job: its lease is this process's to renew from now on."""
        with self._held_lock:
            self._held[job_id] = run

    def release(self, job_id: str, run: int) -> None:
        """The run has ended (FINISH, failure, retry) or lost its lease: stop renewing it. Another run of the same
        job that this process took since (its lease was claimed, and the job came back here) stays held."""
        with self._held_lock:
            if self._held.get(job_id) == run:
                del self._held[job_id]

    def held(self) -> dict[str, int]:
        """A copy of the runs this process carries."""
        with self._held_lock:
            return dict(self._held)

    def models(self) -> Models:
        """The models, loaded on first call."""
        return get_models(self.settings)

    def device(self) -> Device:
        """The device thread that runs this process's models (started on first call)."""
        with self._lock:
            if self._device is None:
                s = self.settings
                on_gpu = self.models().device == "cuda"
                # Batching across jobs pays on a GPU (one launch, fuller kernels); on a CPU it only adds latency.
                max_batch = s.encoder_batch or (worker_slots(s) if on_gpu else 1)
                self._device = Device(self.models, Thresholds(s.box_threshold, s.text_threshold, s.max_objects),
                                      max_batch, answer_timeout_s=s.task_time_limit_s)
                self._device.start()
            return self._device

    def start_heartbeat(self, hostname: str) -> None:
        """Announce this worker in Redis until stopped (readiness and capacity checks read it)."""
        hostname = hostname or socket.gethostname()

        def beat() -> None:
            while not self._stop.is_set():
                try:
                    self.beat_once(hostname)
                except redis.RedisError:
                    log.warning("heartbeat to Redis failed; retrying")
                self._stop.wait(self.settings.worker_heartbeat_s)
            workers.retire(self.redis, hostname)

        def sweep() -> None:  # storage calls can take minutes (S3 retries): never on the heartbeat's thread
            while not self._stop.wait(self.settings.worker_heartbeat_s):
                try:
                    self.sweep_expired()
                except redis.RedisError:
                    log.warning("expiry sweep could not reach Redis; retrying")

        threading.Thread(target=beat, name="samq-heartbeat", daemon=True).start()
        threading.Thread(target=sweep, name="samq-sweeper", daemon=True).start()

    def beat_once(self, hostname: str) -> None:
        """One heartbeat: announce, renew the leases of the runs in hand, then take back lapsed jobs and resend
        unsent ones. Only Redis and broker calls: the thread must never wait on storage or the device."""
        began = time.monotonic()
        workers.announce(self.redis, hostname)
        held = self.held()
        for job_id in self.jobs.renew(held):
            log.warning("job %s: this worker's lease was claimed by another worker; its result will be dropped",
                        job_id)
            self.release(job_id, held[job_id])
        # A worker that was itself cut off from Redis (its previous beat failed or came late) judges nobody's
        # lease this time: the others may not have renewed theirs yet either.
        prompt = began - self._beat_ok_at <= 2 * self.settings.worker_heartbeat_s
        self._beat_ok_at = time.monotonic()
        if prompt and time.monotonic() - began <= self.settings.worker_heartbeat_s:
            self.requeue_lapsed()
        self.resend_unsent()

    def requeue_lapsed(self) -> list[str]:
        """Send again the jobs whose lease lapsed (their worker died or stalled): each is claimed by one worker."""
        claimed = self.jobs.claim_lapsed()
        for job_id, queue in claimed:
            log.warning("job %s: its worker's lease lapsed; queued again", job_id)
            enqueue_segment(self.celery, job_id, queue)
        if claimed:
            self.jobs.sent([job_id for job_id, _ in claimed])
        return [job_id for job_id, _ in claimed]

    def resend_unsent(self) -> None:
        """Send jobs whose gateway died between recording and enqueueing them (else they would wait forever)."""
        for job_id in self.jobs.claim_unsent(self.settings.resend_after_s):
            job = self.jobs.get(job_id)
            if job is None:
                continue
            log.warning("job %s was recorded but never enqueued; sending it now", job_id)
            enqueue_segment(self.celery, job_id, job.queue)

    def sweep_expired(self) -> None:
        """Delete the stored input and outputs of jobs whose retention has ended."""
        for job_id in self.jobs.claim_expired():
            try:
                self.storage.delete(f"inputs/{job_id}")
                self.storage.delete_prefix(f"results/{job_id}/")
            except Exception:  # the bucket's lifecycle rule is the backstop
                log.warning("could not delete the stored objects of expired job %s", job_id, exc_info=True)

    def stop_heartbeat(self) -> None:
        """Stop announcing (the key is deleted)."""
        self._stop.set()
