"""How a job record looks to its owner: the one view the API and webhooks both show."""

from __future__ import annotations

from typing import Any

from shared.records import JobRecord, JobStatus
from shared.storage import Storage


def output_urls(job: JobRecord, storage: Storage, base_url: str, expires_s: int) -> dict[str, str]:
    """Where each output can be downloaded: presigned storage URLs, else the gateway's result route."""
    urls = {}
    for name, output in (job.outputs or {}).items():
        urls[name] = storage.presign(output["key"], expires_s) or f"{base_url}/v1/jobs/{job.id}/result?output={name}"
    return urls


def public_job(job: JobRecord, storage: Storage, base_url: str, expires_s: int) -> dict[str, Any]:
    """The public JSON of a job (no key ids, no storage keys); `base_url` is the gateway's, no trailing slash."""
    urls: dict[str, Any] = {"self": f"{base_url}/v1/jobs/{job.id}"}
    if job.status is JobStatus.SUCCEEDED:
        urls["result"] = f"{base_url}/v1/jobs/{job.id}/result"
        urls["outputs"] = output_urls(job, storage, base_url, expires_s)
    return {
        "id": job.id,
        "status": job.status.value,
        "priority": job.priority,
        "batch_id": job.batch_id,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "attempts": job.attempts,
        "cancel_requested": job.cancel_requested,
        "worker": job.worker,  # who runs it (under a lease), or ran it last
        "model": job.model,  # the model preset (e.g. "large", "sam3")
        "error": job.error,
        "objects": job.objects or [],
        "objects_found": job.objects_found,
        "outputs": list(job.outputs or {}),
        "embedding": job.embedding,
        "timings": job.timings,
        "metadata": job.metadata,
        "urls": urls,
    }
