"""Getting a job's image: from storage or its URL, decoded as displayed, with the reduced copy the models see."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from shared.errors import NotFound, SamqError
from shared.fetch import fetch
from shared.images import load_rgb, peek_image
from worker.embedding import cache_key

if TYPE_CHECKING:
    from worker.runtime import Runtime

MODEL_SIDE = 1024  # SAM 2 encodes 1024x1024; Grounding DINO resizes to 800 px (at most 1333)
PIXEL_OUTPUTS = frozenset({"overlay_jpeg", "cutout_png"})  # outputs drawn from the photo's own pixels


def model_view(image: Image.Image) -> Image.Image:
    """What the models see: the image reduced by an integer factor while both sides stay >= 1024 px.

    Both models shrink a large photo anyway; a box-filter reduction in Pillow first is cheap, and spares
    the pixel hash, SAM 2's float tensor of the full image and Grounding DINO's resize. Masks and boxes
    still come back in the full image's pixels.
    """
    factor = min(image.size) // MODEL_SIDE
    return image.reduce(factor) if factor >= 2 else image


@dataclass(frozen=True)
class Picture:
    """A job's decoded image: what the models see, its displayed size, and its pixels when an output needs them."""

    view: Image.Image
    size: tuple[int, int]  # (width, height) as displayed: prompts, boxes and masks are in these pixels
    full: Image.Image | None = None

    @classmethod
    def of(cls, image: Image.Image) -> Picture:
        """A fully decoded image."""
        return cls(model_view(image), image.size, image)

    @cached_property
    def pixels(self) -> np.ndarray:
        """The view as an HWC uint8 array."""
        return np.asarray(self.view)

    @cached_property
    def key(self) -> str:
        """The embedding cache's key for this picture (hashing every pixel: worth doing off the device thread)."""
        return cache_key(self.pixels, self.hw)

    @property
    def hw(self) -> tuple[int, int]:
        """(height, width) as displayed."""
        return self.size[1], self.size[0]


def decode(data: bytes, max_bytes: int, max_pixels: int, outputs: list[str]) -> Picture:
    """Decode for the outputs asked: a large JPEG none of whose outputs shows its pixels is decoded at reduced scale."""
    if PIXEL_OUTPUTS.intersection(outputs):
        return Picture.of(load_rgb(data, max_bytes, max_pixels))
    info = peek_image(data, max_bytes, max_pixels)
    return Picture(model_view(load_rgb(data, max_bytes, max_pixels, min_side=MODEL_SIDE)), (info.width, info.height))


def load_input(rt: Runtime, job: dict) -> Picture:
    """The job's image: fetched (URL) or read from storage, decoded, EXIF-oriented."""
    s = rt.settings
    if job.get("input_url"):
        data = fetch(job["input_url"], s.max_image_bytes, s.fetch_timeout_s, s.allowed_fetch_hosts)
    else:
        try:
            data = rt.storage.get(job["input_key"])
        except NotFound as exc:  # our fault, not the client's: a server error, retried
            raise SamqError(f"the stored input of job {job['id']} is missing") from exc
    return decode(data, s.max_image_bytes, s.max_image_pixels, job["params"].get("outputs", ["overlay_jpeg"]))
