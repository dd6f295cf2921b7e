"""How a job record looks to its owner."""

from __future__ import annotations

from typing import Any

from flask import url_for

from gateway.services import services
from shared.jobs import JobStatus


def output_urls(job: dict[str, Any]) -> dict[str, str]:
    """Where each output can be downloaded: presigned storage URLs, else the gateway's result route."""
    svc = services()
    urls = {}
    for name, output in job.get("outputs", {}).items():
        urls[name] = svc.storage.presign(output["key"], svc.settings.presign_expires_s) or url_for(
            "jobs.get_result", job_id=job["id"], output=name, _external=True)
    return urls


def job_view(job: dict[str, Any]) -> dict[str, Any]:
    """The public JSON of a job (no key ids, no storage keys)."""
    status = JobStatus(job["status"])
    error = None
    if "error_code" in job:
        error = {"code": job["error_code"], "message": job.get("error_message", "")}
    urls = {"self": url_for("jobs.get_job", job_id=job["id"], _external=True)}
    if status is JobStatus.SUCCEEDED:
        urls["result"] = url_for("jobs.get_result", job_id=job["id"], _external=True)
        urls["outputs"] = output_urls(job)
    return {
        "id": job["id"],
        "status": status.value,
        "created_at": job.get("created_at"),
        "started_at": job.get("started_at"),
        "finished_at": job.get("finished_at"),
        "attempts": job.get("attempts", 0),
        "error": error,
        "objects": job.get("objects", []),
        "objects_found": int(job["objects_found"]) if "objects_found" in job else None,
        "outputs": list(job.get("outputs", {})),
        "embedding": job.get("embedding"),
        "metadata": job.get("metadata"),
        "urls": urls,
    }
