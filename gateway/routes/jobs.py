"""Asynchronous jobs: submit, poll, fetch the result, cancel."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from gateway.auth import authenticate
from gateway.body import request_body
from gateway.routes.views import job_view
from gateway.services import services
from gateway.submit import accept, fingerprint, prepare
from shared.errors import Expired, InvalidRequest, NoResult, NotCancelable, NotFinished, NotFound, SamqError
from shared.jobs import Accepted, Cancel, id_age_s
from shared.records import JobRecord, JobStatus
from shared.schemas import IDEMPOTENCY_KEY_MAX_CHARS, JobRequest, parse_body

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")


def idempotency_key() -> str | None:
    """The request's Idempotency-Key header (1 to IDEMPOTENCY_KEY_MAX_CHARS printable characters), if any."""
    value = request.headers.get("Idempotency-Key")
    if value is None:
        return None
    value = value.strip()
    if len(value) > IDEMPOTENCY_KEY_MAX_CHARS:
        raise InvalidRequest(f"'Idempotency-Key' is {len(value)} characters long; the limit is "
                             f"{IDEMPOTENCY_KEY_MAX_CHARS}")
    if not value or not value.isprintable():
        raise InvalidRequest(f"'Idempotency-Key' must be 1 to {IDEMPOTENCY_KEY_MAX_CHARS} printable characters")
    return value


def answer_json(status: int, body: dict, accepted: Accepted) -> Response:
    """The answer to a submit; replays of an idempotent request say so, as Stripe's do."""
    response = jsonify(body)
    response.status_code = status
    if "urls" in body:
        response.headers["Location"] = body["urls"]["self"]
    if accepted.replay is not None:
        response.headers["Idempotent-Replayed"] = "true"
    else:  # the balance ACCEPT returned: no extra read after the request
        response.headers["x-remaining-credits"] = str(accepted.balance)
    return response


def gone(kind: str, record_id: str) -> SamqError:
    """404 for a missing or another key's job or batch (indistinguishable); one older than retention expired."""
    retention = services().settings.retention_s
    age = id_age_s(record_id)
    if age is not None and age > retention:
        return Expired(f"{kind} {record_id} has expired: {kind}s are kept {retention} s after they end")
    return NotFound(f"no {kind} {record_id}")


def own_job(job_id: str, key_id: str) -> JobRecord:
    """The caller's job, or 404."""
    job = services().jobs.get(job_id)
    if job is None or job.key_id != key_id:
        raise gone("job", job_id)
    return job


@bp.post("")
def submit_job():
    """Queue a job and answer at once (202); an Idempotency-Key makes retries safe."""
    key = authenticate()
    svc = services()
    idem = idempotency_key()
    body = request_body()
    req = parse_body(JobRequest, body)
    item = prepare(svc, key, req)
    status, answer, accepted = accept(svc, key, [item], lambda jobs: (202, job_view(jobs[0])), idem,
                                      fingerprint(body))
    return answer_json(status, answer, accepted)


@bp.get("/<job_id>")
def get_job(job_id: str):
    """A job's status and details."""
    key = authenticate()
    return jsonify(job_view(own_job(job_id, key.key_id)))


@bp.post("/<job_id>/cancel")
def cancel_job(job_id: str):
    """Cancel a job: queued ones at once (200, refunded), running ones at their next check (202)."""
    key = authenticate()
    svc = services()
    job = own_job(job_id, key.key_id)
    outcome = svc.jobs.cancel(job)
    if outcome is Cancel.TERMINAL:
        raise NotCancelable(f"job {job_id} has already {job.status.value}; it cannot be canceled")
    response = jsonify(job_view(svc.jobs.get(job_id) or job))
    response.status_code = 200 if outcome is Cancel.CANCELED else 202
    return response


@bp.get("/<job_id>/result")
def get_result(job_id: str):
    """The bytes of a finished job's output."""
    key = authenticate()
    job = own_job(job_id, key.key_id)
    status = job.status
    if status is not JobStatus.SUCCEEDED:
        if status.terminal:
            raise NoResult(f"job {job_id} is {status.value}; it has no result")
        raise NotFinished(f"job {job_id} is {status.value}; poll until it has succeeded")
    outputs = job.outputs or {}
    name = request.args.get("output") or next(iter(outputs), None)
    if name not in outputs:
        raise InvalidRequest(f"unknown output {name!r}; this job has {', '.join(outputs)}")
    try:
        data = services().storage.get(outputs[name]["key"])
    except NotFound as exc:
        raise Expired(f"the {name} output of job {job_id} has expired") from exc
    return Response(data, mimetype=outputs[name]["content_type"], headers={"x-job-id": job_id})
