"""Machine-readable results: per object label, score, box, area, COCO RLE, optional polygons."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from pycocotools import mask as coco_mask

if TYPE_CHECKING:
    from worker.pipeline import Object


def rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO run-length encoding of a bool mask (decode with pycocotools.mask.decode)."""
    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
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
        "area": int(obj.mask.sum()),
        "rle": rle(obj.mask),
    }
    if obj.mask_score is not None:
        out["mask_score"] = obj.mask_score
    if with_polygons:
        out["polygons"] = polygons(obj.mask)
    return out


def objects_json(size: tuple[int, int], objects: list[Object], with_polygons: bool) -> bytes:
    """The json output: image size and every object."""
    body = {"width": size[0], "height": size[1],
            "objects": [describe(i, o, with_polygons) for i, o in enumerate(objects)]}
    return json.dumps(body).encode()
