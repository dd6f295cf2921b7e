"""Request bodies: validation and coercion (coordinates as strings or arrays, lenient booleans)."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from shared.errors import InvalidRequest

Point = tuple[float, float]
Box = tuple[float, float, float, float]
OUTPUTS = ("overlay_jpeg", "mask_jpeg", "mask_png", "cutout_png", "json")
_TRUE = {"true", "1", "yes", "on", "t", "y"}
_FALSE = {"false", "0", "no", "off", "f", "n", ""}


def parse_bool(value: Any) -> bool:
    """true/false, 1/0 and their string forms (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("expected a boolean: true/false, 1/0")


def parse_points(value: Any) -> list[Point]:
    """`[x,y]`, `[[x,y], ...]`, or either as a JSON string; numbers must be finite and >= 0."""
    if value is None:
        return []
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


def _json_list(value: Any, expected: str) -> list:
    """A list given as itself or as a JSON string; None and blank strings are empty."""
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
    if isinstance(value, str) and value.strip().lower() == "all":
        return "all"
    return parse_bool(value)


def parse_phrases(value: Any) -> str | list[str] | None:
    """A text prompt: one string (phrases split on . , ;) or a list of phrases."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list) and all(isinstance(p, str) for p in value):
        phrases = [p.strip() for p in value if p.strip()]
        return phrases or None
    raise ValueError("expected a string or a list of strings")


Bool = Annotated[bool, BeforeValidator(parse_bool)]
Points = Annotated[list[Point], BeforeValidator(parse_points)]
Boxes = Annotated[list[Box], BeforeValidator(parse_boxes)]


class SegmentRequest(BaseModel):
    """The drop-in `/v1/sam-v2-image` body (unknown fields are ignored, as the hosted API does)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    image: str = Field(min_length=1)
    prompt: str | None = None
    coordinates: Points = []
    remove_coordinates: Points = []
    overlay_mask: Bool = True
    base64: Bool = False

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return value.strip() or None

    @field_validator("image", mode="before")
    @classmethod
    def _image(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("expected a base64 string or an http(s) URL")
        return value

    def check(self, max_points: int, max_boxes: int = 64, max_objects: int = 100) -> None:
        """Rules across fields."""
        if self.prompt is None and not self.coordinates:
            raise InvalidRequest("give a 'prompt' or 'coordinates'")
        if self.prompt is None and len(self.coordinates) + len(self.remove_coordinates) > max_points:
            raise InvalidRequest(f"'coordinates' and 'remove_coordinates' allow at most {max_points} points")
        if self.prompt is not None and len(self.prompt) > 1000:
            raise InvalidRequest("'prompt' is longer than 1000 characters")

    @property
    def is_url(self) -> bool:
        """Whether `image` is a URL rather than base64."""
        return self.image.lstrip()[:8].lower().startswith(("http://", "https://"))

    def params(self) -> dict[str, Any]:
        """What the worker needs, without the image."""
        outputs = ["overlay_jpeg" if self.overlay_mask else "mask_jpeg"]
        if self.prompt is not None:  # a prompt wins: coordinates are ignored
            return {"prompt": self.prompt, "overlay_mask": self.overlay_mask, "outputs": outputs}
        points = [list(p) for p in self.coordinates] + [list(p) for p in self.remove_coordinates]
        labels = [1] * len(self.coordinates) + [0] * len(self.remove_coordinates)
        return {"points": points, "labels": labels, "overlay_mask": self.overlay_mask, "outputs": outputs}


class JobRequest(SegmentRequest):
    """`POST /v1/jobs`: the drop-in fields plus every prompt kind and output; unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str | list[str] | None = None
    point_labels: list[int] | None = None
    boxes: Boxes = []
    multimask: Annotated[bool | str | None, BeforeValidator(parse_multimask)] = None
    box_threshold: float | None = Field(None, ge=0, le=1)
    text_threshold: float | None = Field(None, ge=0, le=1)
    max_objects: int | None = Field(None, ge=1)
    outputs: list[str] | None = None
    polygons: Bool = False
    metadata: dict[str, Any] | None = None
    priority: Literal["high", "normal", "low"] = "normal"
    webhook_url: str | None = Field(None, min_length=1, max_length=2048)
    webhook_events: list[Literal["started", "completed"]] = ["completed"]

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, value: Any) -> Any:  # replaces the drop-in's rule: lists of phrases are allowed here
        return parse_phrases(value)

    @field_validator("point_labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else None
        if value is not None and (not isinstance(value, list) or any(v not in (0, 1) or isinstance(v, bool)
                                                                     for v in value)):
            raise ValueError("expected a list of 1 (include) and 0 (exclude) labels, one per coordinate")
        return value

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if value is not None:
            if not isinstance(value, list) or not value:
                raise ValueError(f"expected a non-empty list from {', '.join(OUTPUTS)}")
            unknown = [v for v in value if v not in OUTPUTS]
            if unknown:
                raise ValueError(f"unknown output {unknown[0]!r}; choose from {', '.join(OUTPUTS)}")
            value = list(dict.fromkeys(value))
        return value

    def check(self, max_points: int, max_boxes: int = 64, max_objects: int = 100) -> None:
        """Rules across fields."""
        if self.prompt is None and not self.coordinates and not self.boxes:
            raise InvalidRequest("give a 'prompt', 'coordinates' or 'boxes'")
        if isinstance(self.prompt, str) and len(self.prompt) > 1000:
            raise InvalidRequest("'prompt' is longer than 1000 characters")
        if isinstance(self.prompt, list) and len(self.prompt) > 32:
            raise InvalidRequest("'prompt' allows at most 32 phrases")
        if self.prompt is None:
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

    def points(self) -> tuple[list[list[float]], list[int]]:
        """All clicks with their labels (1 include, 0 exclude)."""
        labels = list(self.point_labels) if self.point_labels is not None else [1] * len(self.coordinates)
        coords = [list(p) for p in self.coordinates] + [list(p) for p in self.remove_coordinates]
        return coords, labels + [0] * len(self.remove_coordinates)

    def chosen_outputs(self) -> list[str]:
        """The outputs to render: as asked, else the picture the drop-in would give plus the JSON."""
        return self.outputs or ["overlay_jpeg" if self.overlay_mask else "mask_jpeg", "json"]

    def params(self) -> dict[str, Any]:
        """What the worker needs, without the image."""
        params: dict[str, Any] = {"outputs": self.chosen_outputs(), "overlay_mask": self.overlay_mask}
        if self.prompt is not None:
            params["prompt"] = self.prompt
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
        return params


class BatchRequest(BaseModel):
    """`POST /v1/batches`: many job bodies (validated one by one), plus what applies to the whole batch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    items: list[Any] = Field(min_length=1)
    webhook_url: str | None = Field(None, min_length=1, max_length=2048)
    priority: Literal["high", "normal", "low"] | None = None
    metadata: dict[str, Any] | None = None


def check_inside(params: dict[str, Any], width: int, height: int) -> None:
    """Clicks and boxes must lie inside the displayed image; the message names the field."""
    for (x, y), label in zip(params.get("points", []), params.get("labels", []), strict=True):
        if not (x < width and y < height):
            field = "coordinates" if label == 1 else "remove_coordinates"
            raise InvalidRequest(f"'{field}' point [{x:g}, {y:g}] is outside the {width}x{height} image")
    for box in params.get("boxes", []):
        if box[2] > width or box[3] > height:
            raise InvalidRequest(f"'boxes' box {[round(v, 1) for v in box]} is outside the {width}x{height} image")


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
            problems.append(f"'{field}': {message}")
        raise InvalidRequest("; ".join(problems)) from exc
