"""The inference task: take a job id, run it, store the result, settle credits exactly once."""

from __future__ import annotations

import logging

from celery import Celery, Task

from shared import names
from shared.errors import NotFound, SamqError
from shared.fetch import fetch
from shared.images import load_rgb
from shared.jobs import JobStatus
from worker import pipeline
from worker.runtime import Runtime

log = logging.getLogger(__name__)
RETRY_BACKOFF_S = (2, 10, 30)


def result_key(job_id: str, name: str = "overlay.jpg") -> str:
    """Where a job's output lives in storage."""
    return f"results/{job_id}/{name}"


def run_job(rt: Runtime, job: dict) -> pipeline.Outcome:
    """Load the input, run the models, store the output."""
    s = rt.settings
    if job.get("input_url"):
        data = fetch(job["input_url"], s.max_image_bytes, s.fetch_timeout_s, s.allowed_fetch_hosts)
    else:
        try:
            data = rt.storage.get(job["input_key"])
        except NotFound as exc:  # our fault, not the client's: a server error, retried
            raise SamqError(f"the stored input of job {job['id']} is missing") from exc
    image = load_rgb(data, s.max_image_bytes, s.max_image_pixels)
    outcome = pipeline.run(rt.models(), image, job["params"], s.box_threshold, s.text_threshold)
    rt.storage.put(result_key(job["id"]), outcome.jpeg, "image/jpeg")
    return outcome


def register_tasks(app: Celery, rt: Runtime) -> None:
    """Bind the tasks to a Celery app and a worker runtime."""

    @app.task(name=names.TASK_SEGMENT, bind=True, acks_late=True, reject_on_worker_lost=True)
    def segment(self: Task, job_id: str) -> None:
        store = rt.jobs
        job = store.get(job_id)
        if job is None:
            log.warning("job %s expired or unknown; dropping", job_id)
            return
        attempt = store.start(job_id, rt.settings.max_attempts)
        if attempt == 0:
            return  # already terminal (canceled, or finished before a redelivery)
        if attempt < 0:
            store.fail(job, "too_many_attempts", f"the job failed {-attempt - 1} attempts", 500)
            return
        try:
            outcome = run_job(rt, job)
        except SamqError as exc:
            if exc.status >= 500 and attempt < rt.settings.max_attempts:
                raise self.retry(countdown=RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S)) - 1]) from exc
            # The client's input is at fault: retrying would give the same answer.
            store.fail(job, exc.code, exc.message, exc.status)
            return
        except Exception as exc:
            log.exception("job %s attempt %d failed", job_id, attempt)
            if attempt < rt.settings.max_attempts:
                raise self.retry(countdown=RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S)) - 1]) from exc
            store.fail(job, "internal_error", f"inference failed: {exc.__class__.__name__}", 500)
            return
        store.finish(
            job, JobStatus.SUCCEEDED, objects=outcome.objects, objects_found=outcome.found,
            outputs={"overlay_jpeg" if job["params"].get("overlay_mask", True) else "mask_jpeg":
                     {"key": result_key(job_id), "content_type": "image/jpeg"}},
        )
