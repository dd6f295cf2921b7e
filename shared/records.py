"""The typed job: its status, the params the gateway hands the worker, and the record stored in Redis.

A job is two Redis keys (shared/names.py): a hash of its fields (`JobRecord.to_redis`) and its params as one JSON
string beside it (a string of their own keeps the hash small enough for Redis's compact encoding). The gateway,
the worker and the views all read and write a job through these types, as rq's `Job` does.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared import names


class JobStatus(StrEnum):
    """queued -> running -> succeeded | failed | canceled; terminal states never change."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        """True for states that never change again."""
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})

Coordinates = list[list[int | float]]  # pixel positions as sent: ints stay ints (messages echo them)


class Params(BaseModel):
    """What the worker needs of a request, without its image (shared.schemas builds it from the request body).

    A field the request did not set keeps its default here and is left out of the stored JSON, so a job's params
    are stored exactly as they were asked.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    outputs: list[str] = Field(default_factory=lambda: ["overlay_jpeg"])
    overlay_mask: bool = True
    prompt: str | list[str] | None = None  # Grounding DINO's text, or a list of phrases (SAM 3: its concepts)
    points: Coordinates = Field(default_factory=list)
    labels: list[int] = Field(default_factory=list)  # per point: 1 include, 0 exclude
    boxes: Coordinates = Field(default_factory=list)  # [x0, y0, x1, y1] each
    exemplars: Coordinates = Field(default_factory=list)  # SAM 3 only
    negative_exemplars: Coordinates = Field(default_factory=list)
    multimask: bool | Literal["all"] | None = None  # None: three candidates for one click, one otherwise
    box_threshold: float | None = None  # None: the worker's SAMQ_BOX_THRESHOLD
    text_threshold: float | None = None
    max_objects: int | None = None
    everything: dict[str, Any] | None = None  # shared.schemas.EverythingOptions, as set (None: not everything mode)
    polygons: bool = False  # objects.json carries polygons too

    def to_json(self) -> str:
        """The stored form: the fields the request set, compact UTF-8."""
        return dump_json(self.model_dump(exclude_unset=True))


class JobRecord(BaseModel):
    """One job as stored: what ACCEPT records, then what START, the claims and FINISH add."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # ignore: records written by an older version load

    id: str
    key_id: str
    status: JobStatus = JobStatus.QUEUED
    cost: int = 0  # credits held for it (always recorded: the default reads a partial record)
    params: Params = Field(default_factory=Params)
    queue: str = names.QUEUE_NORMAL
    priority: str = "normal"
    created_at: str = Field(default_factory=lambda: now_iso())
    model: str | None = None  # the preset asked (SAMQ_MODELS); FINISH stores the one that ran
    # the input: a URL the worker fetches, or bytes in storage (with what the gateway read of its header)
    input_url: str | None = None
    input_key: str | None = None
    input_type: str | None = None
    width: int | None = None
    height: int | None = None
    batch_id: str | None = None
    metadata: dict[str, Any] | None = None
    webhook_url: str | None = None
    webhook_events: list[str] | None = None
    # START and the claims
    attempts: int = 0
    run: int = 0  # the current run: its lease's token (a claim moves it on)
    worker: str | None = None  # who runs it (under a lease), or ran it last
    started_at: str | None = None
    cancel_requested: bool = False
    # FINISH
    finished_at: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_status: int | None = None
    objects: list[dict[str, Any]] | None = None
    objects_found: int | None = None
    outputs: dict[str, dict[str, Any]] | None = None  # output name -> {key, content_type, bytes}
    embedding: str | None = None  # "cached" or "computed"
    batch: int | None = None  # images in the encoder call that computed its embedding
    timings: dict[str, Any] | None = None  # seconds per stage (worker.metrics.Timings)

    @classmethod
    def from_redis(cls, raw: dict[bytes, bytes], params: bytes | None) -> JobRecord:
        """A record from its hash's fields and its params string."""
        fields: dict[str, Any] = {}
        for k, v in raw.items():
            key, value = k.decode(), v.decode()
            fields[key] = json.loads(value) if key in JSON_FIELDS else value
        fields["cancel_requested"] = fields.get("cancel_requested") == "1"
        return cls.model_validate({**fields, "params": json.loads(params) if params else {}})

    def to_redis(self) -> dict[str, str]:
        """The hash's fields (params are stored apart: `params.to_json()`); unset fields are left out."""
        return encode_fields(self.model_dump(exclude={"params"}, exclude_none=True))

    @property
    def error(self) -> dict[str, str] | None:
        """The error as shown on the job, if it failed with one."""
        if self.error_code is None:
            return None
        return {"code": self.error_code, "message": self.error_message or ""}


JSON_FIELDS = frozenset({"objects", "outputs", "metadata", "timings", "webhook_events"})


def now_iso() -> str:
    """Current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dump_json(value: Any) -> str:
    """Compact JSON with text kept as UTF-8 (not \\u escapes): what is stored weighs what the request bounds
    count (shared.schemas: metadata bytes, prompt characters), not up to 3 times that."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def encode_fields(fields: dict[str, Any]) -> dict[str, str]:
    """Record fields as Redis hash values: JSON fields as JSON, flags as '1' (false ones left out), the rest as text."""
    out = {}
    for key, value in fields.items():
        if value is None or value is False:
            continue
        if key in JSON_FIELDS:
            out[key] = dump_json(value)
        elif value is True:
            out[key] = "1"
        else:
            out[key] = str(value)
    return out


class Success(BaseModel):
    """What a run that succeeded stores on its job (FINISH)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    objects: list[dict[str, Any]]  # as shown on the job (the masks themselves are in the outputs)
    objects_found: int
    outputs: dict[str, dict[str, Any]]
    embedding: str
    model: str
    timings: dict[str, Any]
    batch: int | None = None
