"""Machine-readable results: per object label, score, box, area, COCO RLE, optional polygons; and what every job
keeps for dataset exports (masks.json: the RLE with the mask's own bbox and a YOLO-seg polygon)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from worker import render

if TYPE_CHECKING:
    from worker.pipeline import Object


def area(mask: np.ndarray) -> int:
    """Pixels in a bool mask (cv2 counts them a dozen times faster than numpy's sum of bools)."""
    return cv2.countNonZero(np.ascontiguousarray(mask).view(np.uint8))


def rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO run-length encoding of a bool mask (decode with pycocotools.mask.decode)."""
    # pycocotools reads column-major uint8: cv2's transpose makes that layout faster than np.asfortranarray.
    encoded = coco_mask.encode(cv2.transpose(np.ascontiguousarray(mask).view(np.uint8)).T)
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer contours as flat [x0, y0, x1, y1, ...] lists (COCO polygon style), 3+ points each."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def describe(index: int, obj: Object, with_polygons: bool) -> dict[str, Any]:
    """One object as JSON."""
    out: dict[str, Any] = {
        "id": index + 1,  # its value in mask_png
        "label": obj.label,
        "score": obj.score,
        "box": obj.box,
        "area": obj.area,
        "rle": obj.rle,
    }
    if obj.mask_score is not None:
        out["mask_score"] = obj.mask_score
    if obj.stability_score is not None:
        out["stability_score"] = obj.stability_score
    if with_polygons:
        out["polygons"] = polygons(obj.mask)
    return out


def objects_json(size: tuple[int, int], objects: list[Object], with_polygons: bool) -> bytes:
    """The json output: image size and every object."""
    body = {"width": size[0], "height": size[1],
            "objects": [describe(i, o, with_polygons) for i, o in enumerate(objects)]}
    return json.dumps(body).encode()


def kept_masks(size: tuple[int, int], objects: list[Object]) -> bytes:
    """results/<id>/masks.json, stored by every job whatever its outputs, so any finished batch can be exported
    (GET /v1/batches/<id>/export builds COCO and YOLO-seg from it without decoding a mask): per object its label,
    scores, COCO RLE, `area` (the mask's pixels), `bbox` (the mask's bounds, COCO [x, y, w, h]) and `polygon`
    (one outline in pixels, parts and holes joined as YOLO-seg wants)."""
    kept = []
    for obj in objects:
        box = render.bounds(obj.mask)  # (y0, y1, x0, x1); None when empty
        entry: dict[str, Any] = {"label": obj.label, "score": obj.score, "area": obj.area,
                                 "bbox": [box[2], box[0], box[3] - box[2], box[1] - box[0]] if box else [0, 0, 0, 0],
                                 "rle": obj.rle, "polygon": yolo_polygon(obj.mask) if box else []}
        if obj.stability_score is not None:
            entry["stability_score"] = obj.stability_score
        kept.append(entry)
    return json.dumps({"width": size[0], "height": size[1], "objects": kept}, separators=(",", ":")).encode()


OUTLINE_TOLERANCE_PX = 1.0  # outlines are simplified (Douglas-Peucker) within a pixel: far fewer points


def yolo_polygon(mask: np.ndarray) -> list[int]:
    """The mask's outline as one flat [x0, y0, x1, y1, ...] polygon in pixels, as YOLO-seg labels take it.

    YOLO-seg has one polygon per object: several parts and holes are joined into one outline by zero-width
    bridges between the closest points of consecutive contours, walked there and back (what Ultralytics'
    COCO converter does, `merge_multi_segment`). A mask of one or two pixels becomes their pixel squares' box.
    Outlines are simplified within OUTLINE_TOLERANCE_PX (bench/RESULTS.md, dataset export).
    """
    box = render.bounds(mask)
    if box is None:
        return []
    # Only the mask's box (grown by a pixel, so that the outline never lies on the crop's edge): the same contours
    # as on the whole picture, in a fraction of the time for a small object.
    y0, y1 = max(box[0] - 1, 0), min(box[1] + 1, mask.shape[0])
    x0, x1 = max(box[2] - 1, 0), min(box[3] + 1, mask.shape[1])
    crop = np.ascontiguousarray(mask[y0:y1, x0:x1]).view(np.uint8)
    contours, _ = cv2.findContours(crop, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE, offset=(x0, y0))
    segments = []
    for c in contours:
        if len(c) > 4:
            c = cv2.approxPolyDP(c, OUTLINE_TOLERANCE_PX, True)
        segments.append(c.reshape(-1, 2).astype(np.int64))
    if not segments:
        return []
    segments.sort(key=lambda seg: (int(seg[:, 0].min()), int(seg[:, 1].min())))
    if len(segments) == 1 and len(segments[0]) < 3:
        x0, y0 = segments[0].min(axis=0)
        x1, y1 = segments[0].max(axis=0) + 1
        return [int(x0), int(y0), int(x1), int(y0), int(x1), int(y1), int(x0), int(y1)]
    return [int(v) for v in np.concatenate(_join(segments)).reshape(-1)]


def _closest(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Indices of the closest pair of points, one from each outline (in chunks: bounded memory)."""
    best, pair = None, (0, 0)
    for start in range(0, len(a), 512):
        d = ((a[start:start + 512, None, :] - b[None, :, :]) ** 2).sum(-1)
        i = int(d.argmin())
        if best is None or d.flat[i] < best:
            best, pair = d.flat[i], (start + i // len(b), i % len(b))
    return pair


def _join(segments: list[np.ndarray]) -> list[np.ndarray]:
    """Walk every outline in full: into each at its closest point to the previous one, out to the next at its
    closest point to that one, and back along the same bridges."""
    entry = [0] * len(segments)
    exit_: list[int | None] = [None] * len(segments)
    for i in range(1, len(segments)):
        exit_[i - 1], entry[i] = _closest(segments[i - 1], segments[i])
    forward, back = [], []
    for i, seg in enumerate(segments):
        loop = np.roll(seg, -entry[i], axis=0)
        loop = np.concatenate([loop, loop[:1]])  # closed: back at the entry point
        if (out := exit_[i]) is None:
            forward.append(loop)
            break
        j = (out - entry[i]) % len(seg)
        forward.append(loop[: j + 1])
        back.append(loop[j:])
    return forward + back[::-1]
