"""One job's inference: decoded image + params -> objects (label, score, box, mask) -> rendered outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from shared.records import Params
from shared.schemas import check_inside
from worker import everything, export, render
from worker.embedding import Embedder
from worker.inputs import PIXEL_OUTPUTS, Picture
from worker.metrics import stage
from worker.models.dino import Detection, Detector, detect


@dataclass
class Object:
    """One segmented object."""

    label: str
    score: float  # detector score for text prompts, SAM's predicted IoU otherwise
    mask: np.ndarray  # bool (H, W)
    box: list[float] | None = None  # the prompt box (text/box prompts) or the mask's bounds
    mask_score: float | None = None
    stability_score: float | None = None  # segment everything: the mask's stability under threshold changes

    @cached_property
    def area(self) -> int:
        """Pixels in the mask."""
        return export.area(self.mask)

    @cached_property
    def rle(self) -> dict[str, Any]:
        """The mask as COCO RLE, computed once for the json output and the masks every job keeps."""
        return export.rle(self.mask)


@dataclass
class Outcome:
    """What a job produced: objects, rendered files, and how the embedding was obtained."""

    objects: list[Object]
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # output name -> (bytes, content type)
    cache_hit: bool = False
    masks: bytes | None = None  # every object's mask as COCO RLE (worker/export.kept_masks), always stored

    @property
    def found(self) -> int:
        """Objects with a non-empty mask."""
        return sum(1 for o in self.objects if o.mask.any())


@dataclass(frozen=True)
class Thresholds:
    """Worker-wide defaults, overridable per job."""

    box: float
    text: float
    max_objects: int
    everything_objects: int = 1000  # a cap on segment-everything jobs (the gateway sets each job's own bound)


def _bounds(mask: np.ndarray) -> list[float] | None:
    box = render.bounds(mask)  # (y0, y1, x0, x1)
    return [float(box[2]), float(box[0]), float(box[3]), float(box[1])] if box else None


def detect_objects(dino: Detector, picture: Picture, params: Params, limits: Thresholds) -> list[Detection]:
    """Grounding DINO's boxes for a text prompt, best first, at most max_objects (in displayed pixels)."""
    with stage("detect"):
        found = detect(dino, picture.view, params.prompt or "", asked_or(params.box_threshold, limits.box),
                       asked_or(params.text_threshold, limits.text), size=picture.size)
    return found[: min(asked_or(params.max_objects, limits.max_objects), limits.max_objects)]


T = TypeVar("T")


def asked_or(asked: T | None, default: T) -> T:
    """The job's own value where it set one (0 included), else the worker's default."""
    return default if asked is None else asked


def needs_embedding(params: Params, found: list[Detection] | None) -> bool:
    """Whether SAM 2 must see the image: always, except for a text prompt that found nothing."""
    return not params.prompt or bool(found)


@torch.inference_mode()
def segment(embedder: Embedder, dino: Detector, picture: Picture, params: Params, limits: Thresholds,
            found: list[Detection] | None = None) -> tuple[list[Object], bool]:
    """Objects for a text prompt (its detections, when already run), boxes, clicks, or everything; and whether
    the embedding was cached."""
    if params.everything is not None:  # SAM 2's automatic mask generator on a grid of points
        return everything.segment(embedder, picture, params.everything, limits.everything_objects)
    pixels, full_hw = picture.pixels, picture.hw
    multimask = params.multimask
    keep_all = multimask == "all"
    if params.prompt:
        if found is None:
            found = detect_objects(dino, picture, params, limits)
        if not found:
            return [], False
        hit = embedder.set_image(pixels, full_hw, picture.key)
        with stage("decode"):
            masks, scores = embedder.predict(None, None, np.array([d.box for d in found], dtype=np.float32),
                                             bool(multimask), keep_all)
        return [Object(d.label, round(d.score, 4), m, [round(v, 1) for v in d.box], round(float(s), 4))
                for d, ms, ss in zip(found, masks, scores, strict=True) for m, s in zip(ms, ss, strict=True)], hit

    check_inside(params, *picture.size)
    points, labels, boxes = params.points, params.labels, params.boxes
    hit = embedder.set_image(pixels, full_hw, picture.key)
    coords = np.array(points, dtype=np.float32) if points else None
    point_labels = np.array(labels, dtype=np.int32) if points else None
    if boxes:
        box_array = np.array(boxes, dtype=np.float32)
        with stage("decode"):  # several boxes go through SAM 2 in one batched call
            masks, scores = embedder.predict(coords, point_labels, box_array if len(boxes) > 1 else box_array[0],
                                             bool(multimask), keep_all)
        return [Object("box", round(float(s), 4), m, [round(v, 1) for v in box])
                for box, ms, ss in zip(boxes, masks, scores, strict=True) for m, s in zip(ms, ss, strict=True)], hit
    # One click is ambiguous: ask for three candidates and keep the best, as SAM's authors advise.
    wanted = multimask if multimask is not None else len(points) == 1
    with stage("decode"):
        masks, scores = embedder.predict(coords, point_labels, None, bool(wanted), wanted == "all")
    return [Object("points", round(float(s), 4), m, _bounds(m)) for m, s in zip(masks[0], scores[0], strict=True)], hit


def render_outputs(picture: Picture, objects: list[Object], params: Params,
                   consume: bool = False) -> dict[str, tuple[bytes, str]]:
    """Every requested output, encoded (`picture.full_pixels` is there whenever an output needs them).

    `consume`: the caller is done with the picture, so the overlay may be drawn on the photo itself (no copy).
    """
    image, size = picture.full_pixels, picture.size
    masks = [o.mask for o in objects]
    files: dict[str, tuple[bytes, str]] = {}
    wanted = params.outputs
    for name in wanted:
        if name == "overlay_jpeg":
            assert image is not None  # decoded with every pixel: this output shows them
            last = consume and not PIXEL_OUTPUTS.intersection(wanted[wanted.index(name) + 1 :])
            files[name] = (render.to_jpeg(render.overlay(image, masks, in_place=last)), "image/jpeg")
        elif name == "mask_jpeg":
            files[name] = (render.to_jpeg(render.mask_image(size, masks)), "image/jpeg")
        elif name == "mask_png":
            files[name] = (render.to_png(render.label_image(size, masks)), "image/png")
        elif name == "cutout_png":
            assert image is not None  # decoded with every pixel: this output shows them
            files[name] = (render.to_png(render.cutout(image, masks)), "image/png")
        elif name == "json":
            files[name] = (export.objects_json(size, objects, params.polygons), "application/json")
    return files


def run(embedder: Embedder, dino: Detector, image: Image.Image | Picture, params: Params,
        limits: Thresholds) -> Outcome:
    """Segment and render on the calling thread (what the worker's task and device threads do between them)."""
    picture = image if isinstance(image, Picture) else Picture.of(image)
    objects, hit = segment(embedder, dino, picture, params, limits)
    with stage("render"):
        files = render_outputs(picture, objects, params)
    return Outcome(objects, files, hit)
