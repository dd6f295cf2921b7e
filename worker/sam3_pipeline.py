"""One job's inference under a SAM 3 preset: the same params and objects as worker/pipeline.py, another engine.

- Text (`prompt`, a string of phrases or a list) and/or `exemplars` / `negative_exemplars` go to the concept
  head: every instance scoring at least `box_threshold` comes back, up to `max_objects`, labelled by its phrase
  ("exemplar" without text). The vision features are computed once per image, then one text pass per phrase.
- Clicks and boxes go to the tracker head, with the same fields, multimask rules and labels as SAM 2's.

Stages: the ViT backbone is `encode` (skipped on an embedding-cache hit); necks, text encoder, DETR and mask heads
are `decode`. There is no `detect` stage: SAM 3 finds the instances itself.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from PIL import Image

from shared.errors import InvalidRequest
from shared.records import Params
from shared.schemas import check_inside
from worker import render
from worker.inputs import Picture
from worker.metrics import stage
from worker.models.sam3 import Sam3Engine
from worker.pipeline import Object, Outcome, Thresholds, asked_or, render_outputs


def phrases(prompt: str | list[str] | None) -> list[str]:
    """The phrases of a prompt: a list as given, a string split on . , ; and newlines; trimmed, lower case."""
    if not prompt:
        return []
    parts = prompt if isinstance(prompt, list) else re.split(r"[.,;\n]", prompt)
    cleaned = [" ".join(p.lower().split()) for p in parts]
    return list(dict.fromkeys(p for p in cleaned if p))


def _bounds(mask: np.ndarray) -> list[float] | None:
    box = render.bounds(mask)  # (y0, y1, x0, x1)
    return [float(box[2]), float(box[0]), float(box[3]), float(box[1])] if box else None


def _check_exemplars_inside(params: Params, width: int, height: int) -> None:
    for name, boxes in (("exemplars", params.exemplars), ("negative_exemplars", params.negative_exemplars)):
        for box in boxes:
            if box[2] > width or box[3] > height:
                raise InvalidRequest(f"'{name}' box {[round(v, 1) for v in box]} is outside the {width}x{height} "
                                     "image")


@torch.inference_mode()
def segment(engine: Sam3Engine, picture: Picture, params: Params,
            limits: Thresholds) -> tuple[list[Object], bool]:
    """Objects for a text prompt and/or exemplars, boxes or clicks; and whether the features were cached."""
    if params.everything is not None:
        raise InvalidRequest("'everything' needs a SAM 2 preset; this worker runs SAM 3")
    texts = phrases(params.prompt)
    exemplars, negatives = params.exemplars, params.negative_exemplars
    if texts or exemplars or negatives:
        _check_exemplars_inside(params, *picture.size)
        hit = engine.set_image(picture.pixels, picture.hw, picture.key)
        limit = min(asked_or(params.max_objects, limits.max_objects), limits.max_objects)
        with stage("decode"):
            found = engine.concept(texts or [None], exemplars, negatives, asked_or(params.box_threshold, limits.box),
                                   limit)
        return [Object(f.label, round(f.score, 4), f.mask, [round(v, 1) for v in f.box]) for f in found], hit

    check_inside(params, *picture.size)
    points, labels, boxes = params.points, params.labels, params.boxes
    multimask = params.multimask
    hit = engine.set_image(picture.pixels, picture.hw, picture.key)
    if boxes:
        with stage("decode"):  # several boxes go through the tracker in one call, one object each
            masks, scores = engine.track(points, labels, boxes, bool(multimask), multimask == "all")
        return [Object("box", round(float(s), 4), m, [round(v, 1) for v in box])
                for box, ms, ss in zip(boxes, masks, scores, strict=True) for m, s in zip(ms, ss, strict=True)], hit
    wanted = multimask if multimask is not None else len(points) == 1  # one click is ambiguous: best of three
    with stage("decode"):
        masks, scores = engine.track(points, labels, [], bool(wanted), wanted == "all")
    return [Object("points", round(float(s), 4), m, _bounds(m)) for m, s in zip(masks[0], scores[0], strict=True)], hit


def run(engine: Sam3Engine, image: Image.Image | Picture, params: Params, limits: Thresholds) -> Outcome:
    """Segment and render on the calling thread (in-process use and tests; the worker splits it across threads)."""
    picture = image if isinstance(image, Picture) else Picture.of(image)
    objects, hit = segment(engine, picture, params, limits)
    with stage("render"):
        files = render_outputs(picture, objects, params)
    return Outcome(objects, files, hit)
