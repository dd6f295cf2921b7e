"""Request bodies: validation and coercion (coordinates as strings or arrays, lenient booleans)."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from shared.errors import InvalidRequest
from shared.records import Params

Point = tuple[float, float]
Box = tuple[float, float, float, float]
OUTPUTS = ("overlay_jpeg", "mask_jpeg", "mask_png", "cutout_png", "json")

# Bounds on every field a request may carry (docs/API.md "Request bounds"; gateway/openapi.py states them as
# maxLength etc.). Over one is a 400 `invalid_request` naming the field and the limit, checked on the raw value
# (before any trimming), so nothing is charged and no job is made. Together they keep one accepted job's Redis
# footprint bounded (bench/footprint.py). The image's own size is SAMQ_MAX_IMAGE_BYTES (413), not a bound here.
PROMPT_MAX_CHARS = 1000  # a text prompt; a list of phrases counts all its phrases together
PROMPT_MAX_PHRASES = 32
IMAGE_URL_MAX_BYTES = 4096  # an image given by URL (UTF-8 bytes: an ASCII URL's length); room for presigned URLs
WEBHOOK_URL_MAX_BYTES = 2048  # webhook_url of jobs, batches and POST /v1/webhooks/enable
METADATA_MAX_BYTES = 16 * 1024  # serialized as compact JSON in UTF-8, as it is stored
BATCH_METADATA_MAX_BYTES = 4 * 1024  # a batch's own metadata: stored with the batch, its idempotent answer and view
METADATA_MAX_KEYS = 64  # counted at every level: every key of every object inside, the top one included
METADATA_MAX_DEPTH = 4  # the metadata object is level 1; each object or array inside it one level more
ARRAY_TEXT_MAX_CHARS = 65_536  # coordinates, remove_coordinates, boxes, point_labels written as a JSON string
OUTPUTS_TEXT_MAX_CHARS = 256  # outputs written as a comma-separated string
LIST_MAX_ITEMS = 16  # outputs and webhook_events as lists (duplicates are dropped)
BOOL_TEXT_MAX_CHARS = 16  # a boolean or multimask written as a string ("true", " yes ", "all")
IDEMPOTENCY_KEY_MAX_CHARS = 255  # the Idempotency-Key header (printable, trimmed)
_TRUE = {"true", "1", "yes", "on", "t", "y"}
_FALSE = {"false", "0", "no", "off", "f", "n", ""}


def parse_bool(value: Any) -> bool:
    """true/false, 1/0 and their string forms (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and len(value) > BOOL_TEXT_MAX_CHARS:
        raise ValueError(f"is a string of {len(value)} characters; the limit is {BOOL_TEXT_MAX_CHARS}")
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("expected a boolean: true/false, 1/0")


def parse_points(value: Any) -> list[Point]:
    """`[x,y]`, `[[x,y], ...]`, or either as a JSON string; numbers must be finite and >= 0."""
    if value is None:
        return []
    _array_text(value)
    if isinstance(value, str) and value.strip() and not value.strip().startswith("["):
        value = f"[{value}]"  # "834,74" is a common spelling of one point
    value = _json_list(value, "expected [x,y] or [[x,y], ...]")
    if not value:
        return []
    if all(_is_number(v) for v in value):
        value = [value]
    points = []
    for item in value:
        if not isinstance(item, list) or len(item) != 2 or not all(_is_number(v) for v in item):
            raise ValueError("each point must be [x, y] with two numbers")
        x, y = float(item[0]), float(item[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError("coordinates must be finite numbers")
        if x < 0 or y < 0:
            raise ValueError("coordinates must not be negative")
        points.append((x, y))
    return points


def _array_text(value: Any) -> None:
    """An array written as a JSON string is at most ARRAY_TEXT_MAX_CHARS long."""
    if isinstance(value, str) and len(value) > ARRAY_TEXT_MAX_CHARS:
        raise ValueError(f"is a string of {len(value)} characters; the limit is {ARRAY_TEXT_MAX_CHARS}")


def _utf8_bytes(value: str) -> int:
    """Length in UTF-8; text with an unpaired surrogate (valid JSON, not valid Unicode) is refused."""
    try:
        return len(value.encode())
    except UnicodeEncodeError as exc:
        raise ValueError("holds an unpaired UTF-16 surrogate escape: not valid Unicode text") from exc


def check_text(value: str, limit: int) -> str:
    """A text field of at most `limit` characters (raw, before trimming)."""
    _utf8_bytes(value)
    if len(value) > limit:
        raise ValueError(f"is {len(value)} characters long; the limit is {limit}")
    return value


def check_url_size(value: str, limit: int) -> str:
    """A URL of at most `limit` bytes in UTF-8 (for an ASCII URL, its length)."""
    size = _utf8_bytes(value)
    if size > limit:
        raise ValueError(f"is {size} bytes long (UTF-8); the limit is {limit}")
    return value


def check_metadata(value: dict[str, Any] | None, max_bytes: int = METADATA_MAX_BYTES) -> dict[str, Any] | None:
    """`metadata`: at most METADATA_MAX_DEPTH levels, METADATA_MAX_KEYS keys in all and METADATA_MAX_BYTES
    serialized (compact JSON, UTF-8: exactly the bytes stored with the job or batch)."""
    if value is None:
        return None
    keys, deepest = 0, 1
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(value, 1)]
    while stack:  # iterative; the body is at most gateway.body.MAX_DEPTH deep anyway
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            keys += len(item)
        stack += [(v, level + 1) for v in (item.values() if isinstance(item, dict) else item)
                  if isinstance(v, dict | list)]
    if deepest > METADATA_MAX_DEPTH:
        raise ValueError(f"nests objects or arrays {deepest} levels deep (the metadata object is level 1); "
                         f"the limit is {METADATA_MAX_DEPTH}")
    if keys > METADATA_MAX_KEYS:
        raise ValueError(f"has {keys} keys (counted at every level); the limit is {METADATA_MAX_KEYS}")
    try:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    except UnicodeEncodeError as exc:
        raise ValueError("holds an unpaired UTF-16 surrogate escape: not valid Unicode text") from exc
    if size > max_bytes:
        raise ValueError(f"is {size} bytes serialized (compact JSON, UTF-8); the limit is {max_bytes}")
    return value


def _json_list(value: Any, expected: str) -> list:
    """A list given as itself or as a JSON string; None and blank strings are empty."""
    _array_text(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(expected) from exc
    if not isinstance(value, list):
        raise ValueError(expected)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_boxes(value: Any) -> list[Box]:
    """`[x0,y0,x1,y1]` or `[[x0,y0,x1,y1], ...]` (or either as a JSON string), with x0 < x1 and y0 < y1."""
    value = _json_list(value, "expected [x0,y0,x1,y1] or [[x0,y0,x1,y1], ...]")
    if value and all(_is_number(v) for v in value):
        value = [value]
    boxes = []
    for item in value:
        if not isinstance(item, list) or len(item) != 4 or not all(_is_number(v) for v in item):
            raise ValueError("each box must be [x0, y0, x1, y1] with four numbers")
        x0, y0, x1, y1 = (float(v) for v in item)
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            raise ValueError("box coordinates must be finite numbers")
        if min(x0, y0) < 0 or x1 <= x0 or y1 <= y0:
            raise ValueError("each box needs 0 <= x0 < x1 and 0 <= y0 < y1")
        boxes.append((x0, y0, x1, y1))
    return boxes


def parse_multimask(value: Any) -> bool | str | None:
    """None (automatic), a boolean, or "all" (every candidate mask as its own object)."""
    if value is None:
        return None
    if isinstance(value, str) and len(value) > BOOL_TEXT_MAX_CHARS:
        raise ValueError(f"is a string of {len(value)} characters; the limit is {BOOL_TEXT_MAX_CHARS}")
    if isinstance(value, str) and value.strip().lower() == "all":
        return "all"
    return parse_bool(value)


def parse_phrases(value: Any) -> str | list[str] | None:
    """A text prompt: one string (phrases split on . , ;) or a list of phrases."""
    if value is None:
        return None
    if isinstance(value, str):
        return check_text(value, PROMPT_MAX_CHARS).strip() or None
    if isinstance(value, list) and all(isinstance(p, str) for p in value):
        if len(value) > PROMPT_MAX_PHRASES:
            raise ValueError(f"has {len(value)} phrases; the limit is {PROMPT_MAX_PHRASES}")
        for phrase in value:
            _utf8_bytes(phrase)
        if (total := sum(len(p) for p in value)) > PROMPT_MAX_CHARS:
            raise ValueError(f"is {total} characters long in all its phrases; the limit is {PROMPT_MAX_CHARS}")
        phrases = [p.strip() for p in value if p.strip()]
        return phrases or None
    raise ValueError("expected a string or a list of strings")


Bool = Annotated[bool, BeforeValidator(parse_bool)]
Points = Annotated[list[Point], BeforeValidator(parse_points)]
Boxes = Annotated[list[Box], BeforeValidator(parse_boxes)]
Prompt = Annotated[str, Field(max_length=PROMPT_MAX_CHARS)]
Phrases = Annotated[list[Annotated[str, Field(max_length=PROMPT_MAX_CHARS)]], Field(max_length=PROMPT_MAX_PHRASES)]
Metadata = Annotated[dict[str, Any] | None, AfterValidator(check_metadata)]
BatchMetadata = Annotated[dict[str, Any] | None, AfterValidator(lambda v: check_metadata(v, BATCH_METADATA_MAX_BYTES))]
WebhookUrlText = Annotated[str, Field(min_length=1, max_length=WEBHOOK_URL_MAX_BYTES),  # maxLength for the schema
                           BeforeValidator(lambda v: check_url_size(v, WEBHOOK_URL_MAX_BYTES) if isinstance(v, str)
                                           else v)]
WebhookUrl = WebhookUrlText | None


class SegmentRequest(BaseModel):
    """The drop-in `/v1/sam-v2-image` body (unknown fields are ignored, as the hosted API does)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    image: str = Field(min_length=1)
    prompt: Prompt | None = Field(None, description="text prompt; when present, coordinates are ignored")
    coordinates: Points = Field([], description="positive clicks (label 1)")
    remove_coordinates: Points = Field([], description="negative clicks (label 0)")
    overlay_mask: Bool = Field(True, description="true: the image with the mask overlaid; false: the mask itself "
                                                 "(white on black)")
    base64: Bool = Field(False, description='true: answer JSON {"image": "<base64 JPEG>"} instead of the JPEG')

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return check_text(value, PROMPT_MAX_CHARS).strip() or None

    @field_validator("image", mode="before")
    @classmethod
    def _image(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("expected a base64 string or an http(s) URL")
        if value.lstrip()[:8].lower().startswith(("http://", "https://")):
            check_url_size(value, IMAGE_URL_MAX_BYTES)
        return value

    def check(self, max_points: int, max_boxes: int = 64, max_objects: int = 100) -> None:
        """Rules across fields."""
        if self.prompt is None and not self.coordinates:
            raise InvalidRequest("give a 'prompt' or 'coordinates'")
        if self.prompt is None and len(self.coordinates) + len(self.remove_coordinates) > max_points:
            raise InvalidRequest(f"'coordinates' and 'remove_coordinates' allow at most {max_points} points")

    @property
    def is_url(self) -> bool:
        """Whether `image` is a URL rather than base64."""
        return self.image.lstrip()[:8].lower().startswith(("http://", "https://"))

    def params(self) -> Params:
        """What the worker needs, without the image."""
        outputs = ["overlay_jpeg" if self.overlay_mask else "mask_jpeg"]
        if self.prompt is not None:  # a prompt wins: coordinates are ignored
            return Params(prompt=self.prompt, overlay_mask=self.overlay_mask, outputs=outputs)
        points = [list(p) for p in self.coordinates] + [list(p) for p in self.remove_coordinates]
        labels = [1] * len(self.coordinates) + [0] * len(self.remove_coordinates)
        return Params(points=points, labels=labels, overlay_mask=self.overlay_mask, outputs=outputs)


EVERYTHING_POINTS_PER_SIDE = (4, 64)  # bounds of points_per_side (SAMQ_EVERYTHING_MAX_POINTS_PER_SIDE may lower 64)
EVERYTHING_POINTS_PER_BATCH = (1, 256)
# Fields a segment-everything job cannot carry: it prompts SAM 2 with its own grid of points.
EVERYTHING_CONFLICTS = ("prompt", "exemplars", "negative_exemplars", "coordinates", "remove_coordinates",
                        "point_labels", "boxes", "multimask",
                        "box_threshold", "text_threshold")


class EverythingOptions(BaseModel):
    """`"everything": {...}`: SAM 2's automatic mask generator (a grid of point prompts, filtered and de-duplicated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    points_per_side: int = Field(32, ge=EVERYTHING_POINTS_PER_SIDE[0], le=EVERYTHING_POINTS_PER_SIDE[1],
                                 description="the grid is points_per_side x points_per_side point prompts")
    points_per_batch: int = Field(64, ge=EVERYTHING_POINTS_PER_BATCH[0], le=EVERYTHING_POINTS_PER_BATCH[1],
                                  description="point prompts decoded in one call (memory, not results)")
    pred_iou_thresh: float = Field(0.8, ge=0, le=1, description="keep masks whose predicted IoU is above this")
    stability_score_thresh: float = Field(0.95, ge=0, le=1, description="keep masks at least this stable")
    box_nms_thresh: float = Field(0.7, ge=0, le=1, description="drop a mask whose box overlaps a better one's "
                                                               "by more than this IoU (1 keeps duplicates)")
    min_area: int = Field(0, ge=0, le=2**31, description="drop masks smaller than this many pixels")
    max_objects: int | None = Field(None, ge=1, description="keep the best this many (by predicted IoU); at most "
                                                            "SAMQ_EVERYTHING_MAX_OBJECTS, its default")
    multimask: bool = Field(True, description="three candidates per point (SAM's default); false is 3x cheaper")


def _everything(value: Any) -> Any:
    """`true` is every default, `false` (or null) is off; an object is the options themselves."""
    if value is True:
        return {}
    if value is False:
        return None
    if value is not None and not isinstance(value, dict):
        raise ValueError("expected true, false or an object of options")
    return value


class JobRequest(SegmentRequest):
    """`POST /v1/jobs`: the drop-in fields plus every prompt kind and output; unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # ignore: pydantic lets a subclass redefine a field, and this one widens the drop-in's prompt to a list of phrases
    # too (SegmentRequest's own methods only hand it on to Params, which takes both); mypy sees a narrower base type.
    prompt: Prompt | Phrases | None = Field(  # type: ignore[assignment]
        None, description='"boy", "boy. dog" or ["boy", "dog"]: every object found for each phrase, labelled by it '
        f"(at most {PROMPT_MAX_PHRASES} phrases, {PROMPT_MAX_CHARS} characters in all)")
    point_labels: list[int] | None = Field(None, description="one label per coordinate: 1 include, 0 exclude "
                                                             "(remove_coordinates adds 0s)")
    boxes: Boxes = Field([], description="[[x0,y0,x1,y1], ...]: one object per box, all in one batched SAM call; "
                                         "one box may be refined with clicks")
    exemplars: Boxes = Field([], description="SAM 3 presets: boxes of examples of the concept to find, with or "
                                             "without prompt")
    negative_exemplars: Boxes = Field([], description="SAM 3 presets: boxes of counter-examples of the concept")
    multimask: Annotated[bool | Annotated[str, Field(max_length=BOOL_TEXT_MAX_CHARS)] | None,
                         BeforeValidator(parse_multimask)] = Field(
        None, description='three candidates per prompt: true keeps the best by score, "all" returns all three '
        "(default: true for a single click)")
    box_threshold: float | None = Field(None, ge=0, le=1, description="Grounding DINO box threshold (default "
                                                                      "SAMQ_BOX_THRESHOLD); SAM 3's score threshold")
    text_threshold: float | None = Field(None, ge=0, le=1, description="Grounding DINO text threshold (default "
                                                                       "SAMQ_TEXT_THRESHOLD)")
    max_objects: int | None = Field(None, ge=1, description="most objects a text prompt returns (at most "
                                                            "SAMQ_MAX_OBJECTS), or segment everything's")
    outputs: Annotated[list[str], Field(max_length=LIST_MAX_ITEMS)] | None = Field(
        None, description=f"any of {', '.join(OUTPUTS)}, as a list or comma-separated (default: the drop-in's "
        "picture and json)")
    polygons: Bool = Field(False, description="add polygons (OpenCV contours) to the json output")
    everything: Annotated[EverythingOptions | None, BeforeValidator(_everything)] = None
    metadata: Metadata = None
    priority: Literal["high", "normal", "low"] = Field("normal", description="workers take high first, then "
                                                                             "normal, then low")
    webhook_url: WebhookUrl = Field(None, description="where this job's events are POSTed (public addresses only, "
                                                      "unless in SAMQ_WEBHOOK_ALLOW_HOSTS)")
    webhook_events: Annotated[list[Literal["started", "completed"]], Field(max_length=LIST_MAX_ITEMS),
                              AfterValidator(lambda v: list(dict.fromkeys(v)))] = Field(
        ["completed"], description="which events to send: started (job.started), completed (job.succeeded, "
        "job.failed, job.canceled)")

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, value: Any) -> Any:  # replaces the drop-in's rule: lists of phrases are allowed here
        return parse_phrases(value)

    @field_validator("point_labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        _array_text(value)
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else None
        if value is not None and (not isinstance(value, list) or any(v not in (0, 1) or isinstance(v, bool)
                                                                     for v in value)):
            raise ValueError("expected a list of 1 (include) and 0 (exclude) labels, one per coordinate")
        return value

    @field_validator("webhook_events", mode="before")
    @classmethod
    def _events(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > LIST_MAX_ITEMS:
            raise ValueError(f"has {len(value)} entries; the limit is {LIST_MAX_ITEMS}")
        return value

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs(cls, value: Any) -> Any:
        if isinstance(value, str):
            if len(value) > OUTPUTS_TEXT_MAX_CHARS:
                raise ValueError(f"is a string of {len(value)} characters; the limit is {OUTPUTS_TEXT_MAX_CHARS}")
            value = [v.strip() for v in value.split(",") if v.strip()]
        if value is not None:
            if not isinstance(value, list) or not value:
                raise ValueError(f"expected a non-empty list from {', '.join(OUTPUTS)}")
            if len(value) > LIST_MAX_ITEMS:
                raise ValueError(f"has {len(value)} entries; the limit is {LIST_MAX_ITEMS}")
            unknown = [v for v in value if v not in OUTPUTS]
            if unknown:
                raise ValueError(f"unknown output {unknown[0]!r}; choose from {', '.join(OUTPUTS)}")
            value = list(dict.fromkeys(value))
        return value

    def check(self, max_points: int, max_boxes: int = 64, max_objects: int = 100,
              max_points_per_side: int = EVERYTHING_POINTS_PER_SIDE[1], max_everything: int = 256) -> None:
        """Rules across fields."""
        if self.everything is not None:
            self.check_everything(max_points_per_side, max_everything)
            return
        if self.exemplars or self.negative_exemplars:
            self.check_exemplars(max_boxes)
        elif self.prompt is None and not self.coordinates and not self.boxes:
            raise InvalidRequest("give a 'prompt', 'coordinates' or 'boxes' (or 'everything': true)")
        if self.prompt is None and not self.exemplars:
            if len(self.coordinates) + len(self.remove_coordinates) > max_points:
                raise InvalidRequest(f"'coordinates' and 'remove_coordinates' allow at most {max_points} points")
            if len(self.boxes) > max_boxes:
                raise InvalidRequest(f"'boxes' allows at most {max_boxes} boxes")
            if self.point_labels is not None and len(self.point_labels) != len(self.coordinates):
                raise InvalidRequest("'point_labels' needs one label per point in 'coordinates'")
            if len(self.boxes) > 1 and (self.coordinates or self.remove_coordinates):
                raise InvalidRequest("'coordinates' can refine one box only; send several boxes without points")
        if self.max_objects is not None and self.max_objects > max_objects:
            raise InvalidRequest(f"'max_objects' allows at most {max_objects}")

    def check_exemplars(self, max_boxes: int) -> None:
        """Exemplar boxes prompt SAM 3's concept head: not with clicks or boxes (the tracker's prompts)."""
        for name in ("coordinates", "remove_coordinates", "point_labels", "boxes", "multimask"):
            value = getattr(self, name)
            if value is not None and value != [] and name in self.model_fields_set:
                raise InvalidRequest(f"'{name}' cannot be combined with 'exemplars' or 'negative_exemplars' (exemplars "
                                     "find every instance of a concept; clicks and boxes segment one object each)")
        if not self.exemplars and self.prompt is None:
            raise InvalidRequest("'negative_exemplars' need a 'prompt' or positive 'exemplars'")
        if len(self.exemplars) + len(self.negative_exemplars) > max_boxes:
            raise InvalidRequest(f"'exemplars' and 'negative_exemplars' allow at most {max_boxes} boxes")

    def check_everything(self, max_points_per_side: int, max_objects: int) -> None:
        """A segment-everything job: no prompt of its own, options within this deployment's bounds."""
        for name in EVERYTHING_CONFLICTS:
            value = getattr(self, name)
            if value is not None and value != [] and name in self.model_fields_set:
                raise InvalidRequest(f"'{name}' cannot be combined with 'everything' (it prompts SAM 2 with a grid "
                                     "of points of its own)")
        options = self.everything
        assert options is not None
        if options.points_per_side > max_points_per_side:
            raise InvalidRequest(f"'everything.points_per_side' allows at most {max_points_per_side} here")
        wanted = options.max_objects if options.max_objects is not None else self.max_objects
        if wanted is not None and wanted > max_objects:
            field = "everything.max_objects" if options.max_objects is not None else "max_objects"
            raise InvalidRequest(f"'{field}' allows at most {max_objects} for 'everything'")

    def points(self) -> tuple[list[list[float]], list[int]]:
        """All clicks with their labels (1 include, 0 exclude)."""
        labels = list(self.point_labels) if self.point_labels is not None else [1] * len(self.coordinates)
        coords = [list(p) for p in self.coordinates] + [list(p) for p in self.remove_coordinates]
        return coords, labels + [0] * len(self.remove_coordinates)

    def chosen_outputs(self) -> list[str]:
        """The outputs to render: as asked, else the picture the drop-in would give plus the JSON."""
        return self.outputs or ["overlay_jpeg" if self.overlay_mask else "mask_jpeg", "json"]

    def params(self) -> Params:
        """What the worker needs, without the image."""
        params: dict[str, Any] = {"outputs": self.chosen_outputs(), "overlay_mask": self.overlay_mask}
        if self.everything is not None:
            options = self.everything.model_dump()
            if options["max_objects"] is None:  # the top-level field applies when the options do not say
                options["max_objects"] = self.max_objects
            params["everything"] = {k: v for k, v in options.items() if v is not None}
        elif self.prompt is not None or self.exemplars:
            if self.prompt is not None:
                params["prompt"] = self.prompt
            if self.exemplars or self.negative_exemplars:
                params["exemplars"] = [list(b) for b in self.exemplars]
                params["negative_exemplars"] = [list(b) for b in self.negative_exemplars]
            for name in ("box_threshold", "text_threshold", "max_objects"):
                if getattr(self, name) is not None:
                    params[name] = getattr(self, name)
        else:
            params["points"], params["labels"] = self.points()
            params["boxes"] = [list(b) for b in self.boxes]
        if self.multimask is not None:
            params["multimask"] = self.multimask
        if self.polygons:
            params["polygons"] = True
        return Params(**params)


class BatchRequest(BaseModel):
    """`POST /v1/batches`: many job bodies (validated one by one), plus what applies to the whole batch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    items: list[Any] = Field(min_length=1)  # at most SAMQ_MAX_BATCH_ITEMS (gateway.submit.prepare_batch)
    webhook_url: WebhookUrl = Field(None, description="where the batch.completed event is POSTed (each item may "
                                                      "have its own webhook_url for its job's events)")
    priority: Literal["high", "normal", "low"] | None = Field(None, description="the priority of items without "
                                                                                "their own (default normal)")
    metadata: BatchMetadata = None


def check_inside(params: Params, width: int, height: int) -> None:
    """Clicks and boxes must lie inside the displayed image; the message names the field."""
    for (x, y), label in zip(params.points, params.labels, strict=True):
        if not (x < width and y < height):
            field = "coordinates" if label == 1 else "remove_coordinates"
            raise InvalidRequest(f"'{field}' point [{x:g}, {y:g}] is outside the {width}x{height} image")
    for name, boxes in (("boxes", params.boxes), ("exemplars", params.exemplars),
                        ("negative_exemplars", params.negative_exemplars)):
        for box in boxes:
            if box[2] > width or box[3] > height:
                raise InvalidRequest(f"'{name}' box {[round(v, 1) for v in box]} is outside the {width}x{height} image")


def parse_body(model: type[BaseModel], body: Any, prefix: str = "") -> Any:
    """Validate a JSON body into `model`, turning pydantic's errors into one clear 400.

    `prefix` places the body inside a larger one in messages, as in `items[5].coordinates`.
    """
    if not isinstance(body, dict):
        raise InvalidRequest(f"'{prefix}' must be a JSON object" if prefix else "the body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join([prefix] * bool(prefix) + [str(p) for p in err["loc"]]) or "body"
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown field"
            # "'metadata' is 20480 bytes serialized; ..." reads better without the colon
            sep = " " if message.startswith(("is ", "has ", "nests ", "holds ")) else ": "
            problems.append(f"'{field}'{sep}{message}")
        raise InvalidRequest("; ".join(problems)) from exc
