"""Turn masks into the images clients get back."""

from __future__ import annotations

import io

import cv2
import numpy as np
import simplejpeg
from PIL import Image

# Distinct, readable colours, one per object (RGB).
PALETTE = np.array(
    [[30, 144, 255], [255, 64, 64], [50, 205, 50], [255, 191, 0], [186, 85, 211], [0, 206, 209],
     [255, 105, 180], [244, 164, 96], [154, 205, 50], [100, 149, 237]],
    dtype=np.uint8,
)
ALPHA = 0.5
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def bounds(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1), the mask's bounding box as slices' ends; None for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def contour(mask: np.ndarray) -> np.ndarray:
    """Pixels of the mask that touch the outside (4-neighbourhood; beyond the array counts as inside)."""
    # erode's default border is the maximum, so pixels on the array's edge are not outlined for touching it.
    return mask & ~cv2.erode(mask.view(np.uint8), _CROSS).view(bool)


def _blend_matrix(colour: np.ndarray) -> np.ndarray:
    """A cv2.transform matrix: each pixel -> pixel * (1 - ALPHA) + colour * ALPHA (cv2 rounds half to even)."""
    return np.hstack([np.eye(3) * (1 - ALPHA), colour.astype(np.float64)[:, None] * ALPHA])


BLEND_MATRICES = [_blend_matrix(colour) for colour in PALETTE]


def overlay(pixels: np.ndarray | Image.Image, masks: list[np.ndarray], in_place: bool = False) -> np.ndarray:
    """The picture (HWC uint8 RGB) with each mask blended in its own colour and outlined.

    Only inside each mask's bounding box (grown by the 1 px the outline looks at): the blend is one affine
    cv2.transform copied through the mask (exactly the float half blend it replaced, per mask), the outline the
    mask minus its erosion. `in_place`: drawn on `pixels` itself.
    """
    if isinstance(pixels, Image.Image):
        out = np.array(pixels.convert("RGB"))
    else:
        out = pixels if in_place and pixels.flags.writeable else pixels.copy()
    height, width = out.shape[:2]
    for i, mask in enumerate(masks):
        box = bounds(mask)
        if box is None:
            continue
        y0, y1, x0, x1 = max(box[0] - 1, 0), min(box[1] + 1, height), max(box[2] - 1, 0), min(box[3] + 1, width)
        region, inside = out[y0:y1, x0:x1], np.ascontiguousarray(mask[y0:y1, x0:x1])
        cv2.copyTo(cv2.transform(region, BLEND_MATRICES[i % len(PALETTE)]), inside.view(np.uint8), region)  # in place
        region[contour(inside)] = PALETTE[i % len(PALETTE)]
    return out


def mask_image(size: tuple[int, int], masks: list[np.ndarray]) -> Image.Image:
    """White where any mask is, black elsewhere (RGB, so every client can read it)."""
    union = np.zeros((size[1], size[0]), dtype=bool)
    for mask in masks:
        union |= mask
    return Image.fromarray(np.where(union, 255, 0).astype(np.uint8), "L").convert("RGB")


def to_jpeg(image: Image.Image | np.ndarray, quality: int = 90) -> bytes:
    """Encode as JPEG (4:2:0, as Pillow does at this quality); arrays go to libjpeg-turbo directly."""
    if isinstance(image, np.ndarray):
        return simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality=quality, colorspace="RGB",
                                      colorsubsampling="420")
    buf = io.BytesIO()
    (image if image.mode == "RGB" else image.convert("RGB")).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def label_image(size: tuple[int, int], masks: list[np.ndarray]) -> Image.Image:
    """Single channel: 0 background, i+1 for object i; where objects overlap the earlier (better) one wins."""
    dtype = np.uint8 if len(masks) < 256 else np.uint16
    labels = np.zeros((size[1], size[0]), dtype=dtype)
    for i in range(len(masks) - 1, -1, -1):
        labels[masks[i]] = i + 1
    return Image.fromarray(labels)


def cutout(image: Image.Image | np.ndarray, masks: list[np.ndarray]) -> Image.Image:
    """RGBA: the image where any mask is, transparent elsewhere."""
    pixels = image if isinstance(image, np.ndarray) else np.asarray(image.convert("RGB"))
    alpha = np.zeros(pixels.shape[:2], dtype=bool)
    for mask in masks:
        alpha |= mask
    rgba = np.dstack([pixels, np.where(alpha, 255, 0).astype(np.uint8)])
    return Image.fromarray(rgba, "RGBA")


def to_png(image: Image.Image) -> bytes:
    """Encode as PNG (lossless: mask values survive)."""
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=False, compress_level=6)
    return buf.getvalue()
