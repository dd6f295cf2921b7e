"""Webhooks: the key's signing secret and its rotation, disabled URLs, a job's delivery log and redelivery."""

from __future__ import annotations

from flask import Blueprint, jsonify
from pydantic import BaseModel, ConfigDict

from gateway.auth import authenticate
from gateway.body import request_body
from gateway.routes.batches import own_batch
from gateway.routes.jobs import own_job
from gateway.services import services
from shared import outbox, webhooks
from shared.errors import NotFound, WebhookDisabled
from shared.schemas import WebhookUrlText, parse_body
from shared.webhooks import Event

bp = Blueprint("webhooks", __name__)


class EnableRequest(BaseModel):
    """Body of POST /v1/webhooks/enable."""

    model_config = ConfigDict(extra="forbid")
    url: WebhookUrlText


@bp.get("/v1/webhooks/secret")
def get_secret():
    """The key's signing secret (made on first use)."""
    key = authenticate()
    return jsonify({"secret": webhooks.secret(services().redis, key.key_id)})


@bp.post("/v1/webhooks/secret/rotate")
def rotate_secret():
    """A new secret; deliveries carry both signatures for 24 h, and disabled URLs are enabled again."""
    key = authenticate()
    secret = webhooks.rotate(services().redis, key.key_id)
    return jsonify({"secret": secret, "previous_valid_for_s": webhooks.ROTATION_OVERLAP_S})


@bp.get("/v1/webhooks/disabled")
def list_disabled():
    """URLs that answered 410 Gone and get no more events from this key."""
    key = authenticate()
    urls = webhooks.disabled_urls(services().redis, key.key_id)
    return jsonify({"urls": [{"url": url, "disabled_at": at} for url, at in urls.items()]})


@bp.post("/v1/webhooks/enable")
def enable():
    """Deliver to a disabled URL again."""
    key = authenticate()
    req = parse_body(EnableRequest, request_body())
    was_disabled = webhooks.enable_url(services().redis, key.key_id, req.url)
    return jsonify({"url": req.url, "enabled": True, "was_disabled": was_disabled})


@bp.get("/v1/jobs/<job_id>/deliveries")
def list_deliveries(job_id: str):
    """Every webhook attempt for a job: time, event, HTTP status or error, duration."""
    key = authenticate()
    own_job(job_id, key.key_id)
    return jsonify({"deliveries": webhooks.deliveries(services().redis, job_id)})


@bp.get("/v1/batches/<batch_id>/deliveries")
def list_batch_deliveries(batch_id: str):
    """Every webhook attempt for a batch's batch.completed event."""
    key = authenticate()
    own_batch(batch_id, key.key_id)
    return jsonify({"deliveries": webhooks.deliveries(services().redis, batch_id)})


@bp.post("/v1/jobs/<job_id>/deliveries/<int:n>/redeliver")
def redeliver(job_id: str, n: int):
    """Send the event of attempt `n` again, with the same webhook-id, on a fresh retry schedule."""
    key = authenticate()
    job = own_job(job_id, key.key_id)
    svc = services()
    attempts = webhooks.deliveries(svc.redis, job_id)
    if not 1 <= n <= len(attempts):
        raise NotFound(f"job {job_id} has no delivery {n} (it has {len(attempts)})")
    record = attempts[n - 1]
    if webhooks.is_disabled(svc.redis, key.key_id, record["url"]):
        raise WebhookDisabled(f"{record['url']} is disabled after a 410; enable it with POST /v1/webhooks/enable")
    event = Event(id=record["event"], type=record["type"], key_id=key.key_id, url=record["url"],
                  at=record["event_at"], job_id=job.id)
    outbox.send(svc.webhook_celery, event.to_json())
    return jsonify({"event": event.id, "type": event.type, "url": event.url, "status": "queued"}), 202
