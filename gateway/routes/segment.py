"""`POST /v1/sam-v2-image`: the drop-in, synchronous over the queue."""

from __future__ import annotations

import base64

from flask import Blueprint, Response, jsonify

from gateway.auth import authenticate
from gateway.body import request_body
from gateway.routes.views import job_view
from gateway.services import services
from gateway.submit import accept, prepare
from shared.errors import error_from_record
from shared.records import JobStatus
from shared.schemas import SegmentRequest, parse_body

bp = Blueprint("segment", __name__)


@bp.post("/v1/sam-v2-image")
def sam_v2_image():
    """Segment and answer with the rendered JPEG (or 202 with the job if it takes too long)."""
    key = authenticate()
    svc = services()
    req = parse_body(SegmentRequest, request_body())
    item = prepare(svc, key, req)
    _, _, accepted = accept(svc, key, [item], lambda jobs: (202, None), need_worker=True)  # capacity after 4xx
    job = svc.waiter.wait(svc.jobs, item.job.id, svc.settings.sync_timeout_s) or item.job
    status = job.status
    if not status.terminal:
        response = jsonify(job_view(job))  # still running: the client polls it
        response.status_code = 202
        response.headers["x-job-id"] = job.id
        response.headers["Location"] = job_view(job)["urls"]["self"]
        return response
    if status is not JobStatus.SUCCEEDED:
        raise error_from_record(job.error_code or "internal_error", job.error_message or "job failed",
                                job.error_status or 500)
    output = next(iter((job.outputs or {}).values()))
    data = svc.storage.get(output["key"])
    headers = {"x-job-id": job.id, "x-objects-found": str(job.objects_found or 0)}
    if accepted.balance is not None:  # a success commits the reservation: the balance ACCEPT saw is final
        headers["x-remaining-credits"] = str(accepted.balance)
    if req.base64:
        response = jsonify({"image": base64.b64encode(data).decode()})
        response.headers.update(headers)
        return response
    return Response(data, mimetype="image/jpeg", headers=headers)
