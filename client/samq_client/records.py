"""Typed records for what the API answers; unknown fields are kept in `raw`, so newer servers never break us."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

TERMINAL = frozenset({"succeeded", "failed", "canceled"})
# Where each output goes when saved next to its input's name (cat.jpg -> cat.overlay.jpg).
OUTPUT_SUFFIX = {
    "overlay_jpeg": ".overlay.jpg",
    "mask_jpeg": ".mask.jpg",
    "mask_png": ".mask.png",
    "cutout_png": ".cutout.png",
    "json": ".json",
}


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class SegmentObject:
    """One object a job found, as the server shows it (`mask_score` only where SAM scored the mask)."""

    label: str | None = None
    score: float | None = None
    box: list[float] | None = None
    area: int | None = None
    mask_score: float | None = None
    stability_score: float | None = None  # segment everything


@dataclass(frozen=True)
class Job:
    """A job as `GET /v1/jobs/<id>` shows it."""

    id: str
    status: str
    priority: str | None = None
    batch_id: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    attempts: int = 0
    cancel_requested: bool = False  # a running job's cancel was asked for; it stops at its next check
    worker: str | None = None  # the worker's hostname: the one running it, or the last one once it ended
    model: str | None = None  # the model preset, e.g. "large" or "sam3"
    error: dict[str, str] | None = None
    objects: list[SegmentObject] = field(default_factory=list)
    objects_found: int | None = None
    outputs: list[str] = field(default_factory=list)
    embedding: str | None = None
    timings: dict[str, float] | None = None
    metadata: dict[str, Any] | None = None
    urls: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """Build from the API's JSON."""
        known = _known(cls, data)
        known["objects"] = [SegmentObject(**_known(SegmentObject, o)) for o in data.get("objects") or []]
        known["outputs"] = list(data.get("outputs") or [])
        known["urls"] = dict(data.get("urls") or {})
        return cls(**known, raw=data)

    @property
    def done(self) -> bool:
        """Whether the job reached a terminal state."""
        return self.status in TERMINAL

    @property
    def succeeded(self) -> bool:
        """Whether the job has results."""
        return self.status == "succeeded"


@dataclass(frozen=True)
class BatchCounts:
    """How many of a batch's jobs are in each state."""

    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0

    @property
    def finished(self) -> int:
        """Jobs in a terminal state."""
        return self.succeeded + self.failed + self.canceled


@dataclass(frozen=True)
class JobRef:
    """A batch member: its id and status."""

    id: str
    status: str


@dataclass(frozen=True)
class Batch:
    """A batch as `POST /v1/batches` or `GET /v1/batches/<id>` shows it (`jobs` holds the pages read so far)."""

    id: str
    total: int
    status: str | None = None
    priority: str | None = None
    counts: BatchCounts = field(default_factory=BatchCounts)
    job_ids: list[str] = field(default_factory=list)
    jobs: list[JobRef] = field(default_factory=list)
    created_at: str | None = None
    finished_at: str | None = None
    metadata: dict[str, Any] | None = None
    next_cursor: int | None = None  # where the next page of `jobs` starts; None on the last page
    urls: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Batch:
        """Build from the API's JSON."""
        known = _known(cls, data)
        jobs = [JobRef(j["id"], j["status"]) for j in data.get("jobs") or []]
        job_ids = list(data.get("job_ids") or [j.id for j in jobs])
        cursor = data.get("next_cursor")
        known.update(jobs=jobs, job_ids=job_ids, total=int(data.get("total", len(job_ids))),
                     counts=BatchCounts(**_known(BatchCounts, data.get("counts") or {})),
                     next_cursor=None if cursor is None else int(cursor), urls=dict(data.get("urls") or {}))
        return cls(**known, raw=data)

    @property
    def done(self) -> bool:
        """Whether every job of the batch reached a terminal state."""
        return self.status == "completed" or self.finished_at is not None or (
            self.total > 0 and self.counts.finished >= self.total)


@dataclass(frozen=True)
class Segmentation:
    """A finished job and the bytes of the outputs asked for."""

    job: Job
    outputs: dict[str, bytes]

    @property
    def objects(self) -> list[SegmentObject]:
        """The objects found."""
        return self.job.objects

    def json(self) -> dict[str, Any]:
        """The `json` output, parsed."""
        return json.loads(self.outputs["json"])

    def save(self, path: str | Path, output: str | None = None) -> Path:
        """Write one output (the first by default) to `path`."""
        name = output or next(iter(self.outputs))
        target = Path(path)
        target.write_bytes(self.outputs[name])
        return target


@dataclass(frozen=True)
class Credits:
    """The caller's balance."""

    credits: int
    name: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Credits:
        """Build from the API's JSON."""
        return cls(int(data["credits"]), data.get("name"))
