"""The shared job view, with this request's base URL."""

from __future__ import annotations

from typing import Any

from flask import request

from gateway.services import services
from shared import views
from shared.records import JobRecord


def job_view(job: JobRecord) -> dict[str, Any]:
    """The public JSON of a job, as seen through this gateway (a job just accepted included: its answer is built
    before it is recorded, so it can be stored for replays)."""
    svc = services()
    return views.public_job(job, svc.storage, request.host_url.rstrip("/"), svc.settings.presign_expires_s)
