"""The shared job view, with this request's base URL."""

from __future__ import annotations

from typing import Any

from flask import request

from gateway.services import services
from shared import views
from shared.jobs import JobStatus, NewJob


def job_view(job: dict[str, Any]) -> dict[str, Any]:
    """The public JSON of a job, as seen through this gateway."""
    svc = services()
    return views.job_view(job, svc.storage, request.host_url.rstrip("/"), svc.settings.presign_expires_s)


def new_job_view(job: NewJob) -> dict[str, Any]:
    """The public JSON of a job just accepted (before it is recorded, so it can be stored for replays)."""
    return job_view({**job.__dict__, "status": JobStatus.QUEUED.value, "attempts": 0})
