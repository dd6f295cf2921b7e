"""How a job record looks to its owner: the one view the API and webhooks both show."""

from __future__ import annotations

from typing import Any

from shared.jobs import JobStatus
from shared.storage import Storage


def output_urls(job: dict[str, Any], storage: Storage, base_url: str, expires_s: int) -> dict[str, str]:
    """Where each output can be downloaded: presigned storage URLs, else the gateway's result route."""
    urls = {}
    for name, output in job.get("outputs", {}).items():
        urls[name] = storage.presign(output["key"], expires_s) or f"{base_url}/v1/jobs/{job['id']}/result?output={name}"
    return urls


def job_view(job: dict[str, Any], storage: Storage, base_url: str, expires_s: int) -> dict[str, Any]:
    """The public JSON of a job (no key ids, no storage keys); `base_url` is the gateway's, no trailing slash."""
    status = JobStatus(job["status"])
    error = None
    if "error_code" in job:
        error = {"code": job["error_code"], "message": job.get("error_message", "")}
    urls = {"self": f"{base_url}/v1/jobs/{job['id']}"}
    if status is JobStatus.SUCCEEDED:
        urls["result"] = f"{base_url}/v1/jobs/{job['id']}/result"
        urls["outputs"] = output_urls(job, storage, base_url, expires_s)
    return {
        "id": job["id"],
        "status": status.value,
        "priority": job.get("priority", "normal"),
        "batch_id": job.get("batch_id"),
        "created_at": job.get("created_at"),
        "started_at": job.get("started_at"),
        "finished_at": job.get("finished_at"),
        "attempts": job.get("attempts", 0),
        "cancel_requested": job.get("cancel_requested") == "1",
        "worker": job.get("worker"),  # who runs it (under a lease), or ran it last
        "model": job.get("model"),  # the model preset (e.g. "large", "sam3")
        "error": error,
        "objects": job.get("objects", []),
        "objects_found": int(job["objects_found"]) if "objects_found" in job else None,
        "outputs": list(job.get("outputs", {})),
        "embedding": job.get("embedding"),
        "timings": job.get("timings"),
        "metadata": job.get("metadata"),
        "urls": urls,
    }
