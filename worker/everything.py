"""Segment everything: sam2's SAM2AutomaticMaskGenerator on the SAM 2 model the worker already holds.

The generator prompts SAM 2 with a grid of points (points_per_side x points_per_side, points_per_batch at a
time), keeps the masks whose predicted IoU and stability pass the thresholds, and removes duplicates (box NMS).
It runs on the device thread like every other model call (worker/device.py -> pipeline.segment).

The embedding cache is used: the generator calls `predictor.set_image(crop)` for each crop, and with one crop
layer (crop_n_layers=0, what samq runs) the only crop is the whole image. Its predictor is replaced by a thin
view of the worker's own predictor whose set_image keeps the state Embedder.set_image restored (from the cache,
or computed once and cached), so the image encoder runs at most once per distinct image, and a batched encoder
call on the device (Device._encode_together) serves everything-mode jobs too. Time lands in the existing
stages: `encode` (Embedder.set_image, on a miss) and `decode` (the generator's grid of decoder calls).

The generator works at the model view's size (the picture as the models see it: a large photo reduced by an
integer factor, both sides >= 1024 px), which bounds its memory (points_per_batch x 3 candidate logits at that
size); when the photo is larger, each kept mask is scaled to the displayed size. `min_area` is a plain filter on
the final masks' pixel counts (sam2's own min_mask_region_area post-processing needs its CUDA extension).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
from sam2.sam2_image_predictor import SAM2ImagePredictor

from worker import render
from worker.metrics import stage

if TYPE_CHECKING:
    from worker.embedding import Embedder
    from worker.inputs import Picture
    from worker.pipeline import Object

DEFAULTS = {"points_per_side": 32, "points_per_batch": 64, "pred_iou_thresh": 0.8, "stability_score_thresh": 0.95,
            "box_nms_thresh": 0.7, "min_area": 0, "multimask": True}
_GENERATORS: dict[tuple, SAM2AutomaticMaskGenerator] = {}  # by (predictor, options): built once, on the device thread


class _SetPredictor:
    """The worker's predictor as the generator sees it: the image is already set (Embedder.set_image)."""

    def __init__(self, predictor: SAM2ImagePredictor) -> None:
        self._predictor = predictor

    def set_image(self, image: np.ndarray) -> None:
        if tuple(image.shape[:2]) != tuple(self._predictor._orig_hw[-1]):  # only the whole image (no crops)
            raise RuntimeError("segment everything runs without crop layers: the crop must be the whole image")

    def reset_predictor(self) -> None:
        """Left as it is: the embedding stays the current image's (the next job restores its own anyway)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._predictor, name)


def generator(predictor: SAM2ImagePredictor, options: dict[str, Any]) -> SAM2AutomaticMaskGenerator:
    """The mask generator for these options, on `predictor`'s model (cached: building one scripts transforms)."""
    key = (id(predictor), *(options[name] for name in ("points_per_side", "points_per_batch", "pred_iou_thresh",
                                                       "stability_score_thresh", "box_nms_thresh", "multimask")))
    gen = _GENERATORS.get(key)
    if gen is None:
        if len(_GENERATORS) >= 16:
            _GENERATORS.pop(next(iter(_GENERATORS)))
        gen = SAM2AutomaticMaskGenerator(
            predictor.model, points_per_side=options["points_per_side"], points_per_batch=options["points_per_batch"],
            pred_iou_thresh=options["pred_iou_thresh"], stability_score_thresh=options["stability_score_thresh"],
            box_nms_thresh=options["box_nms_thresh"], mask_threshold=predictor.mask_threshold, crop_n_layers=0,
            output_mode="binary_mask", multimask_output=options["multimask"])
        gen.predictor = _SetPredictor(predictor)
        _GENERATORS[key] = gen
    return gen


def segment(embedder: Embedder, picture: Picture, options: dict[str, Any], cap: int) -> tuple[list[Object], bool]:
    """Every object SAM 2 finds on a grid of points, best predicted IoU first; and whether the embedding was cached.

    `cap`: the most objects any job may get (options["max_objects"] asks at most that).
    """
    from worker.pipeline import Object  # pipeline imports this module

    options = {**DEFAULTS, **options}
    pixels = picture.pixels
    view_hw = tuple(pixels.shape[:2])
    hit = embedder.set_image(pixels, picture.hw, picture.key)  # the `encode` stage, on a cache miss
    predictor = embedder.predictor
    predictor._orig_hw = [view_hw]  # the generator's masks at the view's size (the embedding does not depend on it)
    gen = generator(predictor, options)
    with stage("decode"), embedder.precision():
        records = gen.generate(pixels)
        records.sort(key=lambda r: -r["predicted_iou"])
        objects = []
        limit = min(options.get("max_objects") or cap, cap)
        for record in records:
            mask = np.ascontiguousarray(record["segmentation"], dtype=bool)
            if view_hw != picture.hw:  # a large photo: the view is an integer reduction of it
                mask = cv2.resize(mask.view(np.uint8), picture.size, interpolation=cv2.INTER_NEAREST).view(bool)
            area = int(mask.sum())
            if area == 0 or area < options["min_area"]:
                continue
            box = render.bounds(mask)  # (y0, y1, x0, x1)
            assert box is not None  # the mask is not empty (area > 0)
            objects.append(Object("object", round(float(record["predicted_iou"]), 4), mask,
                                  [float(box[2]), float(box[0]), float(box[3]), float(box[1])],
                                  stability_score=round(float(record["stability_score"]), 4)))
            if len(objects) >= limit:
                break
    predictor._orig_hw = [picture.hw]
    return objects, hit
