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
