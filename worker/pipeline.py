"""One job's inference: decoded image + params -> masks -> rendered output."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from shared.errors import InvalidRequest
from worker import render
from worker.models.dino import detect
from worker.models.registry import Models
from worker.models.sam import predict_boxes, predict_points


@dataclass
class Outcome:
    """What a job produced."""

    jpeg: bytes
    objects: list[dict[str, Any]] = field(default_factory=list)
    found: int = 0  # objects with a non-empty mask


def check_points(points: list[list[float]], width: int, height: int, name: str) -> None:
    """Every point must lie inside the displayed image."""
    for x, y in points:
        if not (0 <= x < width and 0 <= y < height):
            raise InvalidRequest(f"'{name}' point [{x:g}, {y:g}] is outside the {width}x{height} image")


@torch.inference_mode()
def segment(models: Models, image: Image.Image, params: dict[str, Any], box_threshold: float,
            text_threshold: float) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """Masks and object descriptions for a prompt or clicks."""
    if params.get("prompt"):
        found = detect(models.dino, image, params["prompt"], box_threshold, text_threshold)
        if not found:
            return [], []
        models.sam.set_image(np.asarray(image))
        masks, scores = predict_boxes(models.sam, np.array([d.box for d in found]))
        objects = [
            {"label": d.label, "score": round(d.score, 4), "mask_score": round(float(s), 4),
             "box": [round(v, 1) for v in d.box]}
            for d, s in zip(found, scores, strict=True)
        ]
        return list(masks), objects
    positive, negative = params.get("coordinates", []), params.get("remove_coordinates", [])
    check_points(positive, image.width, image.height, "coordinates")
    check_points(negative, image.width, image.height, "remove_coordinates")
    models.sam.set_image(np.asarray(image))
    mask, score = predict_points(models.sam, positive, negative)
    ys, xs = np.nonzero(mask)
    box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)] if len(xs) else None
    return [mask], [{"label": "points", "score": round(score, 4), "box": box}]


def run(models: Models, image: Image.Image, params: dict[str, Any], box_threshold: float,
        text_threshold: float) -> Outcome:
    """Segment and render the drop-in output (overlay or mask JPEG, the input's displayed size)."""
    masks, objects = segment(models, image, params, box_threshold, text_threshold)
    picture = render.overlay(image, masks) if params.get("overlay_mask", True) else render.mask_image(image.size, masks)
    return Outcome(render.to_jpeg(picture), objects, sum(1 for m in masks if m.any()))
