"""Accepting a job: validate, reserve credits, store the input, record, enqueue; undo on any failure."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from gateway.services import Services
from shared import names, workers
from shared.errors import NoCapacity, SamqError
from shared.fetch import check_url
from shared.images import decode_base64_field, inspect_image
from shared.keys import ApiKey
from shared.queue import enqueue_segment
from shared.schemas import SegmentRequest, check_inside

log = logging.getLogger(__name__)


def workers_alive(svc: Services) -> bool:
    """Whether any worker announced itself recently."""
    return bool(workers.alive(svc.redis, svc.settings.worker_heartbeat_s))


def accept(svc: Services, key: ApiKey, req: SegmentRequest, mode: str, extra: dict[str, Any] | None = None) -> dict:
    """Turn a validated request into a queued job; raises (charging nothing) when it cannot."""
    s = svc.settings
    req.check(s.max_points, s.max_boxes, s.max_objects)
    fields: dict[str, Any] = {"key_id": key.key_id, "mode": mode, "params": req.params(), **(extra or {})}
    data = None
    if req.is_url:
        check_url(req.image, s.allowed_fetch_hosts)  # fast refusal; the worker checks again when it fetches
        fields["input_url"] = req.image.strip()
    else:
        data = decode_base64_field(req.image, s.max_image_bytes)
        info = inspect_image(data, s.max_image_bytes, s.max_image_pixels)
        check_inside(fields["params"], info.width, info.height)
        fields.update(width=info.width, height=info.height, input_type=info.content_type)

    job_id = uuid.uuid4().hex
    queue = names.QUEUE_NORMAL  # priorities come with their own issue; workers already read high first
    reservation = svc.credits.reserve(key.key_id, job_id, s.cost_per_job, s.retention_s)
    try:
        if data is not None:
            fields["input_key"] = f"inputs/{job_id}"
            svc.storage.put(fields["input_key"], data, fields["input_type"])
        svc.jobs.create(job_id, cost=reservation.cost, queue=queue, **fields)
        enqueue_segment(svc.celery, job_id, queue)
        svc.jobs.mark_sent(job_id, queue)
    except Exception as exc:
        # Nothing may be lost: give the credits back and close the job if it was written.
        log.exception("could not accept job %s", job_id)
        job = svc.jobs.get(job_id)
        if job is not None:
            svc.jobs.fail(job, "no_capacity", "the job could not be queued", 503)
        else:
            svc.credits.refund(key.key_id, job_id)
        if isinstance(exc, SamqError):
            raise
        raise NoCapacity("the service could not queue the job; nothing was charged, try again") from exc
    return svc.jobs.get(job_id) or {"id": job_id}
