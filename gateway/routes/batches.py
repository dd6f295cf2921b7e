"""Batches: many jobs validated, charged and queued in one call; their progress; cancel them all."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from gateway.auth import authenticate
from gateway.body import request_body
from gateway.routes.jobs import answer_json, gone, idempotency_key
from gateway.services import services
from gateway.submit import accept, fingerprint, prepare_batch
from shared import batches
from shared.errors import InvalidRequest
from shared.fetch import check_url
from shared.jobs import Cancel, NewJob, new_id, now_iso
from shared.schemas import BatchRequest, parse_body

bp = Blueprint("batches", __name__, url_prefix="/v1/batches")
PAGE_MAX = 1000


def _base_url() -> str:
    return request.host_url.rstrip("/")


def own_batch(batch_id: str, key_id: str) -> dict:
    """The caller's batch, or 404."""
    batch = batches.get_batch(services().redis, batch_id)
    if batch is None or batch.get("key_id") != key_id:
        raise gone("batch", batch_id)
    return batch


@bp.post("")
def submit_batch():
    """Validate every item, then reserve, record and queue them all in one step (202)."""
    key = authenticate()
    svc = services()
    idem = idempotency_key()
    body = request_body()
    req = parse_body(BatchRequest, body)
    if req.webhook_url is not None:
        check_url(req.webhook_url, svc.settings.allowed_webhook_hosts, field="webhook_url")
    batch_id = new_id()
    items = prepare_batch(svc, key, req.items, batch_id, req.priority)
    record = {"id": batch_id, "key_id": key.key_id, "created_at": now_iso(), "priority": req.priority or "normal",
              "webhook_url": req.webhook_url, "metadata": req.metadata}

    def answer(jobs: list[NewJob]) -> tuple[int, dict]:
        view = batches.batch_view({**record, "total": len(jobs), "queued": len(jobs), "running": 0,
                                   "succeeded": 0, "failed": 0, "canceled": 0}, _base_url())
        return 202, {**view, "job_ids": [job.id for job in jobs]}

    status, answer_body, accepted = accept(svc, key, items, answer, idem, fingerprint(body), batch=record)
    return answer_json(status, answer_body, accepted)


@bp.get("/<batch_id>")
def get_batch(batch_id: str):
    """A batch's counts, and one page of its jobs with their statuses (?cursor=N&limit=M)."""
    key = authenticate()
    svc = services()
    batch = own_batch(batch_id, key.key_id)
    try:
        cursor = int(request.args.get("cursor", 0))
        limit = int(request.args.get("limit", 100))
    except ValueError as exc:
        raise InvalidRequest("'cursor' and 'limit' must be whole numbers") from exc
    if cursor < 0 or not 1 <= limit <= PAGE_MAX:
        raise InvalidRequest(f"'cursor' must be >= 0 and 'limit' between 1 and {PAGE_MAX}")
    ids = batches.batch_job_ids(svc.redis, batch_id, cursor, limit)
    statuses = svc.jobs.statuses(ids)
    view = batches.batch_view(batch, _base_url())
    view["jobs"] = [{"id": i, "status": s or "expired"} for i, s in zip(ids, statuses, strict=True)]
    view["next_cursor"] = cursor + len(ids) if cursor + len(ids) < batch["total"] else None
    return jsonify(view)


@bp.post("/<batch_id>/cancel")
def cancel_batch(batch_id: str):
    """Cancel every job of the batch that has not ended: queued ones now, running ones at their next check."""
    key = authenticate()
    svc = services()
    own_batch(batch_id, key.key_id)
    counts = {outcome.value: 0 for outcome in Cancel}
    for job_id in batches.batch_job_ids(svc.redis, batch_id):
        job = svc.jobs.get(job_id)
        outcome = svc.jobs.cancel(job) if job is not None else Cancel.MISSING
        counts[outcome.value] += 1
    view = batches.batch_view(batches.get_batch(svc.redis, batch_id), _base_url())
    view["cancel"] = {"canceled": counts["canceled"], "requested": counts["requested"]}
    return jsonify(view)
