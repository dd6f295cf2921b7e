"""Batches: many jobs validated, charged and queued in one call; their progress; cancel them all."""

from __future__ import annotations

import json

from flask import Blueprint, Response, jsonify, request

from gateway import export
from gateway.auth import authenticate
from gateway.body import request_body
from gateway.routes.jobs import answer_json, gone, idempotency_key
from gateway.services import services
from gateway.submit import accept, fingerprint, prepare_batch
from shared import batches, names
from shared.errors import InvalidRequest, NotFinished, NotFound
from shared.fetch import check_url
from shared.jobs import Cancel, new_id
from shared.records import JobRecord, now_iso
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

    def answer(jobs: list[JobRecord]) -> tuple[int, dict]:
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
    batch = batches.get_batch(svc.redis, batch_id)
    if batch is None:  # it expired while its jobs were being canceled
        raise gone("batch", batch_id)
    view = batches.batch_view(batch, _base_url())
    view["cancel"] = {"canceled": counts["canceled"], "requested": counts["requested"]}
    return jsonify(view)


@bp.get("/<batch_id>/export")
def export_batch(batch_id: str):
    """The finished batch as a dataset: ?format=coco (a COCO instances file) or yolo (a YOLO-seg zip), streamed."""
    key = authenticate()
    svc = services()
    fmt = request.args.get("format", "coco")
    if fmt not in export.FORMATS:
        raise InvalidRequest(f"unknown 'format' {fmt[:64]!r}; choose from {', '.join(export.FORMATS)}")
    batch = own_batch(batch_id, key.key_id)
    if batch["queued"] or batch["running"]:
        raise NotFinished(f"batch {batch_id} has {batch['queued'] + batch['running']} jobs not ended yet; export it "
                          "once it has completed")
    redis, storage = svc.redis, svc.storage

    def records(ids: list[str]) -> list[dict | None]:
        with redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(names.job(job_id), "status", "metadata", "error_code")
            rows = pipe.execute()
        return [None if row[0] is None else {"status": row[0].decode(), "error_code": row[2] and row[2].decode(),
                                             "metadata": json.loads(row[1]) if row[1] else None} for row in rows]

    def read_masks(job_id: str) -> dict | None:
        try:
            return json.loads(storage.get(f"results/{job_id}/masks.json"))
        except NotFound:
            return None

    jobs = export.entries(records, lambda start, count: batches.batch_job_ids(redis, batch_id, start, count),
                          read_masks)
    if fmt == "coco":
        body, mimetype, name = export.coco(batch, jobs), "application/json", f"batch-{batch_id}-coco.json"
    else:
        body, mimetype, name = export.yolo(batch, jobs), "application/zip", f"batch-{batch_id}-yolo.zip"
    return Response(body, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{name}"'})
