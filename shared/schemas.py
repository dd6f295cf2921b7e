"""Request bodies: validation and coercion (coordinates as strings or arrays, lenient booleans)."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from shared.errors import InvalidRequest

Point = tuple[float, float]
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
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if not text.startswith("["):
            text = f"[{text}]"  # "834,74" is a common spelling of one point
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError("expected [x,y] or [[x,y], ...]") from exc
    if not isinstance(value, list):
        raise ValueError("expected [x,y] or [[x,y], ...]")
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


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


Bool = Annotated[bool, BeforeValidator(parse_bool)]
Points = Annotated[list[Point], BeforeValidator(parse_points)]


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

    def check(self, max_points: int) -> None:
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
        if self.prompt is not None:  # a prompt wins: coordinates are ignored
            return {"prompt": self.prompt, "overlay_mask": self.overlay_mask}
        return {
            "coordinates": [list(p) for p in self.coordinates],
            "remove_coordinates": [list(p) for p in self.remove_coordinates],
            "overlay_mask": self.overlay_mask,
        }


class JobRequest(SegmentRequest):
    """`POST /v1/jobs`: the same fields plus client metadata; unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metadata: dict[str, Any] | None = None


def parse_body(model: type[BaseModel], body: Any) -> Any:
    """Validate a JSON body into `model`, turning pydantic's errors into one clear 400."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "body"
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown field"
            problems.append(f"'{field}': {message}")
        raise InvalidRequest("; ".join(problems)) from exc
