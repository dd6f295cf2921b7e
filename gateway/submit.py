"""Accepting jobs: validate everything, store the inputs, one ACCEPT call, publish; undo on any failure.

The order matters: every 4xx (bad body, bad image, unknown key, no credits) comes before any capacity
check (503), and nothing is charged unless the jobs are recorded, waiting and published.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gateway.services import Services
from shared import charges, logs, names, workers
from shared.celery_apps import enqueue_segments
from shared.errors import InsufficientCredits, InvalidRequest, NoCapacity, NotReplicated, SamqError
from shared.fetch import check_url
from shared.images import decode_base64_field, peek_image
from shared.jobs import Accepted, Idempotency, Limits, new_id
from shared.keys import ApiKey
from shared.records import JobRecord
from shared.schemas import JobRequest, SegmentRequest, check_inside, parse_body
from shared.weights import check_prompts

log = logging.getLogger(__name__)
_UPLOADERS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="samq-input")


@dataclass(frozen=True)
class Prepared:
    """A validated job, and its input bytes still to be stored (None for URL inputs)."""

    job: JobRecord
    data: bytes | None


def prepare(svc: Services, key: ApiKey, req: SegmentRequest, batch_id: str | None = None,
            priority: str | None = None) -> Prepared:
    """Check one request completely (no Redis, no storage) and build its job; raises a 4xx error."""
    s = svc.settings
    if isinstance(req, JobRequest):
        req.check(s.max_points, s.max_boxes, s.max_objects, s.everything_max_points_per_side,
                  s.everything_max_objects)
    else:
        req.check(s.max_points, s.max_boxes, s.max_objects)
    params = req.params()
    check_prompts(params, s.models)  # exemplars need a SAM 3 preset, everything a SAM 2 one
    job_id = new_id()
    if batch_id is None:  # the request's log lines name its job (the app unbinds at the end of the request)
        logs.bind(job_id=job_id)
    extra: dict[str, Any] = {}
    data = None
    if req.is_url:
        check_url(req.image, s.allowed_fetch_hosts)  # fast refusal; the worker checks again when it fetches
        extra["input_url"] = req.image.strip()
    else:
        data = decode_base64_field(req.image, s.max_image_bytes)
        info = peek_image(data, s.max_image_bytes, s.max_image_pixels)  # the header only: the worker decodes
        check_inside(params, info.width, info.height)
        extra.update(width=info.width, height=info.height, input_type=info.content_type, input_key=f"inputs/{job_id}")
    if isinstance(req, JobRequest):
        priority = priority or req.priority
        if req.webhook_url is not None:
            check_url(req.webhook_url, s.allowed_webhook_hosts, field="webhook_url")
            extra.update(webhook_url=req.webhook_url.strip(), webhook_events=list(req.webhook_events))
        if req.metadata is not None:
            extra["metadata"] = req.metadata
    priority = priority or "normal"
    if params.everything is not None:  # its own price; at most SAMQ_EVERYTHING_MAX_OBJECTS objects unless asked fewer
        params = params.model_copy(update={"everything": {"max_objects": s.everything_max_objects,
                                                          **params.everything}})
    cost = s.cost_everything if params.everything is not None else s.cost_per_job
    job = JobRecord(id=job_id, key_id=key.key_id, params=params, cost=cost,
                 queue=names.PRIORITY_QUEUES[priority], priority=priority, batch_id=batch_id, model=s.models, **extra)
    return Prepared(job, data)


def fingerprint(body: Any) -> str:
    """A request body's identity for idempotency (key order and spacing do not matter)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def accept(svc: Services, key: ApiKey, items: Sequence[Prepared],
           answer: Callable[[list[JobRecord]], tuple[int, Any]],
           idem_key: str | None = None, body_fingerprint: str = "", batch: dict[str, Any] | None = None,
           need_worker: bool = False) -> tuple[int, Any, Accepted]:
    """Store inputs, record and reserve in one step, publish; returns (status, body, accepted).

    `answer` builds the response from the jobs before they are recorded, so the very same answer can be
    stored for idempotent replays. On a replay the stored answer is returned and nothing else happens.
    """
    s = svc.settings
    jobs = [p.job for p in items]
    status, body = answer(jobs)
    idem = None
    if idem_key:  # the answer as compact UTF-8, like the records: it weighs what the bounded fields it echoes do
        stored = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        idem = Idempotency(idem_key, body_fingerprint, status, stored)
    limits = Limits(
        workers_since=time.time() - 3 * s.worker_heartbeat_s if need_worker else None,
        max_queued=s.max_queued, max_active_per_key=s.max_unfinished_per_key,
    )
    _store_inputs(svc, items)
    # ACCEPT reserves one cost per job of the call: a batch mixing costs is reserved at the dearest, then each
    # job's hold is lowered to its own cost before anything is published (shared/charges.py).
    dearest = max(job.cost for job in jobs)
    mixed = charges.mixed(jobs)
    try:
        reserved = [jobs[0].model_copy(update={"cost": dearest}), *jobs[1:]] if mixed else jobs
        accepted = svc.jobs.accept(reserved, idem, batch, limits)
    except InsufficientCredits as exc:
        _drop_inputs(svc, items)
        if not mixed:
            raise
        raise InsufficientCredits(
            f"this batch costs {sum(job.cost for job in jobs)} credits, and mixing segment-everything items with "
            f"others needs {dearest * len(jobs)} available while it is accepted; {exc.message.split('; ')[1]}; "
            "nothing was charged") from exc
    except NotReplicated as exc:
        # Only the primary has the jobs (SAMQ_REDIS_MIN_REPLICAS): a failover now would lose jobs answered 202, so
        # they are undone before answering 503 (refunded, the stored answer dropped, never published).
        _drop_inputs(svc, items)
        if exc.result and int(exc.result[0]) == 1:  # ACCEPT's code 1: the jobs were recorded
            _undo(svc, key, jobs, idem_key, "unavailable", "the job could not be confirmed on a replica")
        raise
    except BaseException:
        _drop_inputs(svc, items)
        raise
    if accepted.replay is not None:
        _drop_inputs(svc, items)  # a duplicate of a request already accepted: its own upload is not needed
        replay_status, replay_body = accepted.replay
        return replay_status, json.loads(replay_body), accepted
    try:
        if mixed:  # before the publish: no worker can have settled a hold yet
            accepted = Accepted(balance=charges.lower_holds(svc.redis, jobs, s.redis_min_replicas,
                                                            s.redis_wait_timeout_ms))
        for queue in dict.fromkeys(job.queue for job in jobs):
            enqueue_segments(svc.celery, [job.id for job in jobs if job.queue == queue], queue)
    except Exception as exc:
        # Recorded but not published: close the jobs (refunded) so nothing waits forever or stays charged.
        log.exception("could not publish %d job(s)", len(jobs))
        _undo(svc, key, jobs, idem_key, "no_capacity", "the job could not be queued")
        if isinstance(exc, NotReplicated):  # the lowered holds were not confirmed on a replica
            raise
        raise NoCapacity("the service could not queue the job; nothing was charged, try again", 5) from exc
    svc.jobs.sent([job.id for job in jobs])
    return status, body, accepted


def _undo(svc: Services, key: ApiKey, jobs: Sequence[JobRecord], idem_key: str | None, code: str,
          message: str) -> None:
    """Close jobs recorded but never published (failed, refunded) and drop their stored idempotent answer, so a
    retry runs anew; the client is answered 503 and never sees their ids."""
    for job in jobs:
        record = svc.jobs.get(job.id)
        if record is not None:
            svc.jobs.fail(record, code, message, 503)
    svc.jobs.sent([job.id for job in jobs])  # ended: nothing for the workers' resend to send
    if idem_key:
        svc.jobs.forget_answer(key.key_id, idem_key)


def _store_inputs(svc: Services, items: Sequence[Prepared]) -> None:
    uploads = [p for p in items if p.data is not None]
    try:
        if len(uploads) == 1:
            _put(svc, uploads[0])
        elif uploads:
            list(_UPLOADERS.map(lambda p: _put(svc, p), uploads))
    except Exception as exc:
        log.exception("could not store %d input(s)", len(uploads))
        _drop_inputs(svc, items)
        raise NoCapacity("the input could not be stored; nothing was charged, try again", 5) from exc


def _put(svc: Services, item: Prepared) -> None:
    job = item.job
    # an upload: prepare() gave its job a storage key and a content type with its bytes
    assert item.data is not None and job.input_key is not None and job.input_type is not None
    svc.storage.put(job.input_key, item.data, job.input_type)


def _drop_inputs(svc: Services, items: Sequence[Prepared]) -> None:
    for item in items:
        if item.data is not None and item.job.input_key is not None:  # an upload (it has both)
            try:
                svc.storage.delete(item.job.input_key)
            except Exception:  # best effort: the retention sweep and the bucket lifecycle catch leftovers
                log.warning("could not delete %s", item.job.input_key)


def prepare_batch(svc: Services, key: ApiKey, items: list[Any], batch_id: str,
                  priority: str | None) -> list[Prepared]:
    """Validate every item of a batch (a non-empty list: BatchRequest); the first bad one is a 4xx naming it."""
    limit = svc.settings.max_batch_items
    if len(items) > limit:
        raise InvalidRequest(f"'items': a batch holds at most {limit} jobs; this one has {len(items)}")
    prepared = []
    for i, item in enumerate(items):
        where = f"items[{i}]"
        try:
            req = parse_body(JobRequest, item, prefix=where)
            prepared.append(prepare(svc, key, req, batch_id,
                                    priority if "priority" not in req.model_fields_set else None))
        except SamqError as exc:
            if exc.message.startswith(f"'{where}"):
                raise
            raise type(exc)(f"'{where}': {exc.message}", exc.retry_after_s) from exc
    return prepared


def workers_alive(svc: Services) -> bool:
    """Whether any worker announced itself recently."""
    return bool(workers.alive(svc.redis, svc.settings.worker_heartbeat_s))
