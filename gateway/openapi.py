"""The OpenAPI 3.1 document, built from the same pydantic models that validate requests."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel

from shared.schemas import (
    ARRAY_TEXT_MAX_CHARS,
    BATCH_METADATA_MAX_BYTES,
    BOOL_TEXT_MAX_CHARS,
    IDEMPOTENCY_KEY_MAX_CHARS,
    IMAGE_URL_MAX_BYTES,
    METADATA_MAX_BYTES,
    METADATA_MAX_DEPTH,
    METADATA_MAX_KEYS,
    OUTPUTS,
    WEBHOOK_URL_MAX_BYTES,
    BatchRequest,
    EverythingOptions,
    JobRequest,
    SegmentRequest,
)

_POINTS = {"oneOf": [{"type": "string", "maxLength": ARRAY_TEXT_MAX_CHARS,
                      "examples": ["[834,74]", "[[839,74],[844,20]]"]},
                     {"type": "array", "items": {"oneOf": [{"type": "number"}, {"type": "array",
                                                                              "items": {"type": "number"}}]}}],
           "description": "points in displayed pixels: [x,y] or [[x,y], ...], as JSON or a JSON string"}
# Exactly what shared.schemas.parse_bool reads (JSON Schema regexes have no case-insensitive flag).
_BOOL_WORDS = "|".join("".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in word)
                       for word in ("true", "false", "yes", "no", "on", "off", "t", "f", "y", "n", "1", "0"))
_BOOL = {"oneOf": [{"type": "boolean"}, {"type": "number", "enum": [0, 1]},
                   {"type": "string", "maxLength": BOOL_TEXT_MAX_CHARS, "pattern": rf"^\s*({_BOOL_WORDS})?\s*$"}],
         "description": "true/false, 1/0 or their string forms (yes/no, on/off, t/f, y/n; any case)"}
# base64 (standard or URL-safe alphabet, whitespace and line breaks allowed, an optional data: URI prefix) or an
# http(s) URL. Whether the bytes are a JPEG, PNG or WebP within the limits is checked by decoding (422/413).
_IMAGE = {"type": "string", "minLength": 1, "anyOf": [
    {"pattern": r"^\s*[Hh][Tt][Tt][Pp][Ss]?://", "maxLength": IMAGE_URL_MAX_BYTES},  # UTF-8 bytes (server)
    {"pattern": r"^\s*([Dd][Aa][Tt][Aa]:[\w.+/-]*(;[\w=.+-]+)*;[Bb][Aa][Ss][Ee]64,)?[\sA-Za-z0-9+/_=-]*$"}],
    "description": f"the image: base64 (a data: URI prefix allowed; at most SAMQ_MAX_IMAGE_BYTES once decoded, "
                   f"else 413) or an http(s) URL (at most {IMAGE_URL_MAX_BYTES} bytes); JPEG, PNG or WebP"}


def _metadata_level(level: int) -> dict[str, Any]:
    """A value inside metadata at `level` (the metadata object is level 1): deeper containers are refused."""
    scalar: dict[str, Any] = {"type": ["string", "number", "boolean", "null"]}
    if level > METADATA_MAX_DEPTH:
        return scalar
    inner = _metadata_level(level + 1)
    return {"anyOf": [scalar, {"type": "object", "maxProperties": METADATA_MAX_KEYS, "additionalProperties": inner},
                      {"type": "array", "items": inner}]}


# JSON Schema cannot count serialized bytes or keys across levels: those two are in the description, and the
# gateway answers 400 for them; the nesting and the keys of any one object are stated exactly.
_METADATA: dict[str, Any]  # a JSON Schema (its values are of every JSON type)
_METADATA = {"anyOf": [{"type": "object", "maxProperties": METADATA_MAX_KEYS,
                        "additionalProperties": _metadata_level(2)}, {"type": "null"}],
             "default": None,
             "description": f"echoed back on the job or batch: at most {METADATA_MAX_BYTES} bytes as compact JSON "
                            f"(UTF-8), {METADATA_MAX_KEYS} keys counted at every level, {METADATA_MAX_DEPTH} levels "
                            "of objects and arrays (the metadata object is level 1)"}
ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}
JOB = {"type": "object", "properties": {
    "id": {"type": "string"}, "status": {"enum": ["queued", "running", "succeeded", "failed", "canceled"]},
    "created_at": {"type": "string"}, "started_at": {"type": ["string", "null"]},
    "finished_at": {"type": ["string", "null"]}, "attempts": {"type": "integer"},
    "error": {"type": ["object", "null"]}, "objects": {"type": "array", "items": {"type": "object"}},
    "objects_found": {"type": ["integer", "null"]}, "outputs": {"type": "array", "items": {"enum": list(OUTPUTS)}},
    "embedding": {"type": ["string", "null"]}, "metadata": {"type": ["object", "null"]},
    "priority": {"enum": ["high", "normal", "low"]}, "batch_id": {"type": ["string", "null"]},
    "cancel_requested": {"type": "boolean"},
    "worker": {"type": ["string", "null"], "description": "hostname of the worker running it (its last once ended)"},
    "model": {"type": ["string", "null"], "description": "the model preset, e.g. large (SAM 2.1 + Grounding DINO) "
                                                         "or sam3"},
    "timings": {"type": ["object", "null"], "properties": {
        name: {"type": "number"} for name in ("queue_ms", "fetch_ms", "detect_ms", "encode_ms", "decode_ms",
                                              "render_ms", "upload_ms", "total_ms")}},
    "urls": {"type": "object"}}}
BATCH = {"type": "object", "required": ["id", "total", "counts"], "properties": {
    "id": {"type": "string"}, "total": {"type": "integer"}, "counts": {"type": "object"},
    "job_ids": {"type": "array", "items": {"type": "string"}}, "jobs": {"type": "array", "items": {"type": "object"}},
    "next_cursor": {"type": ["integer", "null"]}, "status": {"enum": ["queued", "running", "completed"]},
    "priority": {"enum": ["high", "normal", "low"]}, "created_at": {"type": "string"},
    "finished_at": {"type": ["string", "null"]}, "metadata": {"type": ["object", "null"]},
    "urls": {"type": "object"}}}
CREDITS = {"type": "object", "required": ["credits", "name"],
           "properties": {"credits": {"type": "integer"}, "name": {"type": "string"}}}
_STATUSES = {"400": "malformed body or fields", "401": "missing, unknown or disabled key",
             "404": "no such job or batch for this key (another key's is indistinguishable from none), or expired",
             "406": "not enough credits",
             "409": "no result yet (or the job failed), the job has already ended, the webhook URL is disabled, or "
                    "the batch to export has jobs not ended",
             "413": "too large",
             "422": "image cannot be decoded or fetched, or an Idempotency-Key reused with another body",
             "429": "rate limited, or too many unfinished jobs for the key",
             "500": "server fault", "503": "no capacity, or the store is briefly unavailable (see Retry-After)"}


def _described(model_prop: dict[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
    """A shared schema for a field, its description led by the field's own (from the pydantic model)."""
    own = model_prop.get("description")
    return {**shared, "description": f"{own}: {shared['description']}" if own else shared["description"]}


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    props = schema["properties"]
    props["image"] = _IMAGE
    for name in ("coordinates", "remove_coordinates"):
        props[name] = _described(props[name], _POINTS)
    for name in ("overlay_mask", "base64", "polygons"):
        if name in props:
            props[name] = {**_described(props[name], _BOOL), "default": props[name].get("default")}
    if "metadata" in props:
        props["metadata"] = _METADATA
    if "everything" in props:  # inlined: a $defs reference would not resolve inside the OpenAPI document
        schema.pop("$defs", None)
        props["everything"] = {"anyOf": [{"type": "boolean"}, EverythingOptions.model_json_schema(), {"type": "null"}],
                               "default": None,
                               "description": "segment everything (SAM 2's automatic mask generator): true for the "
                                              "defaults, or its options; not with prompt, coordinates or boxes"}
    return schema


def _batch_schema() -> dict[str, Any]:
    schema = BatchRequest.model_json_schema()
    schema["properties"]["items"]["items"] = {"$ref": "#/components/schemas/JobRequest"}  # each a job's body
    schema["properties"]["items"]["description"] = "the jobs' bodies: at most SAMQ_MAX_BATCH_ITEMS (1,000 by default)"
    schema["properties"]["metadata"] = {**_METADATA, "description": _METADATA["description"].replace(
        f"at most {METADATA_MAX_BYTES} bytes", f"at most {BATCH_METADATA_MAX_BYTES} bytes")}  # the batch's own bound
    return schema


def _errors(*codes: str) -> dict[str, Any]:
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {code: {"description": _STATUSES[code], **ref} for code in codes}


def _json(ref: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


@cache
def openapi_document() -> dict[str, Any]:
    """The whole document (computed once per process)."""
    security: list[dict[str, list[str]]] = [{"apiKey": []}, {"bearer": []}]
    job_id = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    batch_id = [{"name": "batch_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    idem = {"name": "Idempotency-Key", "in": "header", "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX_CHARS,
                       "pattern": r"^[!-~]([ -~]*[!-~])?$"},
            "description": "replays the first answer for 24 h (Stripe semantics)"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "samq", "version": "1", "description": "SAM 2 segmentation: drop-in sync call and jobs"},
        "components": {
            "schemas": {"SegmentRequest": _schema(SegmentRequest), "JobRequest": _schema(JobRequest),
                        "BatchRequest": _batch_schema(), "Job": JOB, "Batch": BATCH,
                        "Error": ERROR, "Credits": CREDITS},
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                                "bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/v1/sam-v2-image": {"post": {
                "summary": "Segment an image and answer with the rendered JPEG", "security": security,
                "requestBody": {"required": True, **_json("SegmentRequest")},
                "responses": {"200": {"description": "the overlay or mask JPEG (or JSON with base64: true)",
                                      "content": {"image/jpeg": {}, "application/json": {}}},
                              "202": {"description": "still running after the sync timeout", **_json("Job")},
                              **_errors("400", "401", "406", "413", "422", "429", "500", "503")}}},
            "/v1/jobs": {"post": {
                "summary": "Queue a job", "security": security, "parameters": [idem],
                "requestBody": {"required": True, **_json("JobRequest")},
                "responses": {"202": {"description": "queued", **_json("Job"), "links": {
                    "GetJob": {"operationId": "getJob", "parameters": {"job_id": "$response.body#/id"}},
                    "GetJobResult": {"operationId": "getJobResult", "parameters": {"job_id": "$response.body#/id"}},
                    "CancelJob": {"operationId": "cancelJob", "parameters": {"job_id": "$response.body#/id"}}}},
                              **_errors("400", "401", "406", "413", "422", "429", "500", "503")}}},
            "/v1/jobs/{job_id}": {"get": {
                "summary": "A job's status and objects", "operationId": "getJob", "security": security,
                "parameters": job_id,
                "responses": {"200": {"description": "the job", **_json("Job")},
                              **_errors("401", "404", "429", "503")}}},
            "/v1/jobs/{job_id}/result": {"get": {
                "summary": "One output's bytes", "operationId": "getJobResult", "security": security,
                "parameters": [*job_id, {"name": "output", "in": "query", "schema": {"enum": list(OUTPUTS)}}],
                "responses": {"200": {"description": "the output", "content": {
                    "image/jpeg": {}, "image/png": {}, "application/json": {}}},
                              **_errors("400", "401", "404", "409", "429", "503")}}},
            "/v1/jobs/{job_id}/cancel": {"post": {
                "summary": "Cancel a job: queued at once (200, refunded), running at its next check (202)",
                "operationId": "cancelJob", "security": security, "parameters": job_id,
                "responses": {"200": {"description": "canceled", **_json("Job")},
                              "202": {"description": "cancel requested", **_json("Job")},
                              **_errors("401", "404", "409", "429", "503")}}},
            "/v1/batches": {"post": {
                "summary": "Queue many jobs at once", "security": security, "parameters": [idem],
                "requestBody": {"required": True, **_json("BatchRequest")},
                "responses": {"202": {"description": "queued", **_json("Batch"), "links": {
                    "GetBatch": {"operationId": "getBatch", "parameters": {"batch_id": "$response.body#/id"}},
                    "CancelBatch": {"operationId": "cancelBatch", "parameters": {"batch_id": "$response.body#/id"}}}},
                              **_errors("400", "401", "406", "413", "422", "429", "500", "503")}}},
            "/v1/batches/{batch_id}": {"get": {
                "summary": "A batch's counts and one page of its jobs", "operationId": "getBatch",
                "security": security, "parameters": [
                    *batch_id, {"name": "cursor", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
                "responses": {"200": {"description": "the batch", **_json("Batch")},
                              **_errors("400", "401", "404", "429", "503")}}},
            "/v1/batches/{batch_id}/export": {"get": {
                "summary": "The finished batch as a dataset: a COCO instances file or a YOLO-seg zip (streamed)",
                "operationId": "exportBatch", "security": security, "parameters": [
                    *batch_id, {"name": "format", "in": "query", "schema": {"enum": ["coco", "yolo"],
                                                                             "default": "coco"}}],
                "responses": {"200": {"description": "COCO JSON (format=coco) or a zip of YOLO-seg labels (yolo)",
                                      "content": {"application/json": {"schema": {"type": "object"}},
                                                  "application/zip": {}}},
                              **_errors("400", "401", "404", "409", "429", "503")}}},
            "/v1/batches/{batch_id}/cancel": {"post": {
                "summary": "Cancel every job of the batch that has not ended", "operationId": "cancelBatch",
                "security": security,
                "parameters": batch_id, "responses": {"200": {"description": "the batch", **_json("Batch")},
                                                      **_errors("401", "404", "429", "503")}}},
            "/v1/credits": {"get": {"summary": "The caller's balance", "security": security,
                                    "responses": {"200": {"description": "credits", **_json("Credits")},
                                                  **_errors("401", "429", "503")}}},
            "/healthz": {"get": {"summary": "The process is up", "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "Redis answers and a worker is alive",
                                "responses": {"200": {"description": "ready"}, "503": {"description": "not"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}},
            **_webhook_paths(security, job_id, batch_id),
        },
    }


def _webhook_paths(security: list[dict], job_id: list[dict], batch_id: list[dict]) -> dict[str, Any]:
    def op(summary: str, ok: str, params: list[dict] | None = None, *errors: str) -> dict[str, Any]:
        return {"summary": summary, "security": security, "parameters": params or [],
                "responses": {"200": {"description": ok}, **_errors("401", *errors, "429", "503")}}

    n = {"name": "n", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
    url_body = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["url"],
        "properties": {"url": {"type": "string", "minLength": 1, "maxLength": WEBHOOK_URL_MAX_BYTES}}}}}}
    return {
        "/v1/webhooks/secret": {"get": op("The key's webhook signing secret (whsec_...)", "{secret}")},
        "/v1/webhooks/secret/rotate": {"post": op("A new secret; the old one also signs for 24 h", "{secret}")},
        "/v1/webhooks/disabled": {"get": op("URLs disabled after answering 410", "{urls}")},
        "/v1/webhooks/enable": {"post": {**op("Deliver to a disabled URL again", "{url, enabled}", None, "400"),
                                         "requestBody": url_body}},
        "/v1/jobs/{job_id}/deliveries": {"get": op("Every webhook attempt for the job", "{deliveries}", job_id,
                                                   "404")},
        "/v1/batches/{batch_id}/deliveries": {"get": op("Every webhook attempt for the batch's batch.completed",
                                                        "{deliveries}", batch_id, "404")},
        "/v1/jobs/{job_id}/deliveries/{n}/redeliver": {"post": {
            **op("Send attempt n's event again, same webhook-id", "", [*job_id, n]),
            "responses": {"202": {"description": "queued"},
                          **_errors("401", "404", "409", "429", "503")}}},
    }
