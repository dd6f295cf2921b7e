"""Asynchronous jobs: submit, poll, fetch the result."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from gateway.auth import authenticate
from gateway.body import request_body
from gateway.routes.views import job_view
from gateway.services import services
from gateway.submit import accept
from shared.errors import InvalidRequest, NoResult, NotFinished, NotFound
from shared.jobs import JobStatus
from shared.schemas import JobRequest, parse_body

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")


def _own_job(job_id: str, key_id: str) -> dict:
    job = services().jobs.get(job_id)
    if job is None or job.get("key_id") != key_id:
        raise NotFound(f"no job {job_id}")  # another key's job is indistinguishable from none
    return job


@bp.post("")
def submit_job():
    """Queue a job and answer at once."""
    key = authenticate()
    req = parse_body(JobRequest, request_body())
    extra = {"metadata": req.metadata} if req.metadata is not None else None
    job = accept(services(), key, req, mode="async", extra=extra)
    response = jsonify(job_view(job))
    response.status_code = 202
    response.headers["Location"] = job_view(job)["urls"]["self"]
    return response


@bp.get("/<job_id>")
def get_job(job_id: str):
    """A job's status and details."""
    key = authenticate()
    return jsonify(job_view(_own_job(job_id, key.key_id)))


@bp.get("/<job_id>/result")
def get_result(job_id: str):
    """The bytes of a finished job's output."""
    key = authenticate()
    job = _own_job(job_id, key.key_id)
    status = JobStatus(job["status"])
    if status is not JobStatus.SUCCEEDED:
        if status.terminal:
            raise NoResult(f"job {job_id} is {status.value}; it has no result")
        raise NotFinished(f"job {job_id} is {status.value}; poll until it has succeeded")
    outputs = job.get("outputs", {})
    name = request.args.get("output") or next(iter(outputs), None)
    if name not in outputs:
        raise InvalidRequest(f"unknown output {name!r}; this job has {', '.join(outputs)}")
    data = services().storage.get(outputs[name]["key"])
    return Response(data, mimetype=outputs[name]["content_type"], headers={"x-job-id": job_id})
