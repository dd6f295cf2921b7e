"""Turn masks into the images clients get back."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Distinct, readable colours, one per object (RGB).
PALETTE = np.array(
    [[30, 144, 255], [255, 64, 64], [50, 205, 50], [255, 191, 0], [186, 85, 211], [0, 206, 209],
     [255, 105, 180], [244, 164, 96], [154, 205, 50], [100, 149, 237]],
    dtype=np.float32,
)
ALPHA = 0.5


def contour(mask: np.ndarray) -> np.ndarray:
    """Pixels of the mask that touch the outside (4-neighbourhood)."""
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def overlay(image: Image.Image, masks: list[np.ndarray]) -> Image.Image:
    """The image with each mask blended in its own colour and outlined."""
    out = np.asarray(image.convert("RGB"), dtype=np.float32).copy()
    for i, mask in enumerate(masks):
        colour = PALETTE[i % len(PALETTE)]
        out[mask] = out[mask] * (1 - ALPHA) + colour * ALPHA
        out[contour(mask)] = colour
    return Image.fromarray(out.round().astype(np.uint8), "RGB")


def mask_image(size: tuple[int, int], masks: list[np.ndarray]) -> Image.Image:
    """White where any mask is, black elsewhere (RGB, so every client can read it)."""
    union = np.zeros((size[1], size[0]), dtype=bool)
    for mask in masks:
        union |= mask
    return Image.fromarray(np.where(union, 255, 0).astype(np.uint8), "L").convert("RGB")


def to_jpeg(image: Image.Image, quality: int = 90) -> bytes:
    """Encode as JPEG."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def label_image(size: tuple[int, int], masks: list[np.ndarray]) -> Image.Image:
    """Single channel: 0 background, i+1 for object i; where objects overlap the earlier (better) one wins."""
    dtype = np.uint8 if len(masks) < 256 else np.uint16
    labels = np.zeros((size[1], size[0]), dtype=dtype)
    for i in range(len(masks) - 1, -1, -1):
        labels[masks[i]] = i + 1
    return Image.fromarray(labels)


def cutout(image: Image.Image, masks: list[np.ndarray]) -> Image.Image:
    """RGBA: the image where any mask is, transparent elsewhere."""
    alpha = np.zeros((image.height, image.width), dtype=bool)
    for mask in masks:
        alpha |= mask
    rgba = np.dstack([np.asarray(image.convert("RGB")), np.where(alpha, 255, 0).astype(np.uint8)])
    return Image.fromarray(rgba, "RGBA")


def to_png(image: Image.Image) -> bytes:
    """Encode as PNG (lossless: mask values survive)."""
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=False, compress_level=6)
    return buf.getvalue()
