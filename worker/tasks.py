"""The inference task: take a job id, run it, store the result, settle credits exactly once."""

from __future__ import annotations

import logging

from celery import Celery, Task

from shared import names
from shared.errors import SamqError
from shared.jobs import Finish, Verdict
from shared.records import JobRecord, JobStatus, Success
from worker import export, pipeline
from worker.inputs import load_input
from worker.metrics import JOBS, Timings, stage, timing
from worker.runtime import Runtime

log = logging.getLogger(__name__)
RETRY_BACKOFF_S = (2, 10, 30)  # seconds before attempt 2, 3, 4...
FILE_NAMES = {"overlay_jpeg": "overlay.jpg", "mask_jpeg": "mask.jpg", "mask_png": "mask.png",
              "cutout_png": "cutout.png", "json": "objects.json"}


def result_key(job_id: str, output: str) -> str:
    """Where one of a job's outputs lives in storage."""
    return f"results/{job_id}/{FILE_NAMES[output]}"


def masks_key(job_id: str) -> str:
    """Where every job keeps its objects' masks (COCO RLE), whatever outputs it asked: batch exports read them."""
    return f"results/{job_id}/masks.json"


def run_job(rt: Runtime, job: JobRecord, timings: Timings) -> tuple[pipeline.Outcome, int | None]:
    """Fetch and decode here, run the models on the device thread, render here; returns the outcome and the
    size of the batched encoder call that served it (None if it was not batched)."""
    with stage("fetch"):
        picture = load_input(rt, job)
        picture.key  # noqa: B018 - hash the pixels on this thread, not the device's
    priority = names.INFER_QUEUES.index(job.queue) if job.queue in names.INFER_QUEUES else 1
    answer = rt.device().segment(picture, job.params, priority, timings)
    with stage("render"):
        files = pipeline.render_outputs(picture, answer.objects, job.params, consume=True)
        masks = export.kept_masks(picture.size, answer.objects)
    return pipeline.Outcome(answer.objects, files, answer.cache_hit, masks), answer.batch


def store_outputs(rt: Runtime, job_id: str, outcome: pipeline.Outcome) -> dict:
    """Upload every rendered output; returns the outputs' index for the job record."""
    index = {}
    with stage("upload"):
        for name, (data, content_type) in outcome.files.items():
            rt.storage.put(result_key(job_id, name), data, content_type)
            index[name] = {"key": result_key(job_id, name), "content_type": content_type, "bytes": len(data)}
        if outcome.masks is not None:  # not an output of its own: kept for GET /v1/batches/<id>/export
            rt.storage.put(masks_key(job_id), outcome.masks, "application/json")
    return index


def summary(obj: pipeline.Object) -> dict:
    """An object as shown on the job (the masks themselves are in the outputs)."""
    out = {"label": obj.label, "score": obj.score, "box": obj.box, "area": obj.area}
    if obj.mask_score is not None:
        out["mask_score"] = obj.mask_score
    if obj.stability_score is not None:
        out["stability_score"] = obj.stability_score
    return out


def register_tasks(app: Celery, rt: Runtime) -> None:
    """Bind the tasks to a Celery app and a worker runtime."""

    @app.task(name=names.TASK_SEGMENT, bind=True, acks_late=True, reject_on_worker_lost=True)
    def segment(self: Task, job_id: str, retry_of: int | None = None) -> None:
        JOBS.labels(run_segment(self, job_id, retry_of)).inc()

    def run_segment(task: Task, job_id: str, retry_of: int | None = None) -> str:
        """Run one attempt of a job; returns the outcome counted in samq_worker_jobs_total."""
        store = rt.jobs
        job = store.get(job_id)
        if job is None:
            log.warning("job %s expired or unknown; dropping", job_id)
            return "skipped"
        start = store.start(job, rt.settings.max_attempts, task.request.hostname or "", retry_of)
        if start.verdict is Verdict.SKIP:
            return "skipped"  # terminal, or running under another live lease: a stale message (docs/DEPLOY.md)
        if start.verdict is Verdict.RUN:
            rt.hold(job_id, start.run)  # the heartbeat renews its lease until the run ends
            try:
                return run_attempt(task, job, start.attempt, start.run)
            finally:
                rt.release(job_id, start.run)
        if start.verdict is Verdict.CANCEL:  # asked while it ran before, or its key was disabled: refunded
            store.finish(job, JobStatus.CANCELED)
            return "canceled"
        store.fail(job, "too_many_attempts", f"the job failed {start.attempt - 1} attempts", 500)  # EXHAUSTED
        return "failed"

    def run_attempt(task: Task, job: JobRecord, attempt: int, run: int) -> str:
        """One run of a job under its lease; every FINISH names the run, so a run claimed away changes nothing."""
        store, job_id = rt.jobs, job.id
        timings = Timings(job.created_at)
        try:
            with timing(timings):
                outcome, batch = run_job(rt, job, timings)
                if store.cancel_requested(job_id):  # checked before anything is uploaded
                    store.finish(job, JobStatus.CANCELED, run)
                    return "canceled"
                if not store.runs(job_id, run):  # its lease lapsed and another worker took the job: upload nothing
                    log.warning("job %s: run %d was claimed by another worker; dropping its result", job_id, run)
                    return "lost"
                outputs = store_outputs(rt, job_id, outcome)
        except Exception as exc:
            error = exc if isinstance(exc, SamqError) else SamqError(
                f"the job failed on the server ({exc.__class__.__name__})")
            if error.status < 500:  # the client's input is at fault: another attempt would answer the same
                store.fail(job, error.code, error.message, error.status, run)
                return "failed"
            log.exception("job %s attempt %d failed", job_id, attempt)
            if attempt < rt.settings.max_attempts:
                JOBS.labels("retried").inc()
                countdown = RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S)) - 1]
                # The lease covers the countdown (a worker that dies holding the retry still loses nothing), and
                # the retry names this run, so its START may begin while that lease lasts.
                store.renew({job_id: run}, countdown + store.lease_s)
                raise task.retry(args=[job_id, run], countdown=countdown) from exc
            store.fail(job, error.code, error.message, error.status, run)  # out of attempts: failed, refunded
            return "failed"
        code = store.end(job, JobStatus.SUCCEEDED, run, Success(
            objects=[summary(o) for o in outcome.objects], objects_found=outcome.found, outputs=outputs,
            embedding="cached" if outcome.cache_hit else "computed", batch=batch, model=rt.models().preset.name,
            timings=timings.as_record()))
        if code == Finish.LOST:  # claimed while uploading: the job is another run's now (same names, same content)
            if store.statuses([job_id])[0] in (JobStatus.FAILED, JobStatus.CANCELED):
                rt.storage.delete_prefix(f"results/{job_id}/")  # no success refers to them
            log.warning("job %s: run %d was claimed by another worker; its result is dropped", job_id, run)
            return "lost"
        if code != Finish.MOVED and store.statuses([job_id])[0] != JobStatus.SUCCEEDED:
            # canceled while uploading: it ended canceled and refunded, so its outputs must go
            rt.storage.delete_prefix(f"results/{job_id}/")
            return "canceled"
        timings.observe()
        return "succeeded"
