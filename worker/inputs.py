"""Getting a job's image: from storage or its URL, decoded as displayed."""

from __future__ import annotations

from PIL import Image

from shared.errors import NotFound, SamqError
from shared.fetch import fetch
from shared.images import load_rgb
from worker.runtime import Runtime

MODEL_SIDE = 1024  # SAM 2 encodes 1024x1024; Grounding DINO resizes to 800 px (at most 1333)


def model_view(image: Image.Image) -> Image.Image:
    """What the models see: the image reduced by an integer factor while both sides stay >= 1024 px.

    Both models shrink a large photo anyway; a box-filter reduction in Pillow first is cheap, and spares
    the pixel hash, SAM 2's float tensor of the full image and Grounding DINO's resize. Masks and boxes
    still come back in the full image's pixels.
    """
    factor = min(image.size) // MODEL_SIDE
    return image.reduce(factor) if factor >= 2 else image


def load_input(rt: Runtime, job: dict) -> Image.Image:
    """The job's image as displayed: fetched (URL) or read from storage, decoded, EXIF-oriented."""
    s = rt.settings
    if job.get("input_url"):
        data = fetch(job["input_url"], s.max_image_bytes, s.fetch_timeout_s, s.allowed_fetch_hosts)
    else:
        try:
            data = rt.storage.get(job["input_key"])
        except NotFound as exc:  # our fault, not the client's: a server error, retried
            raise SamqError(f"the stored input of job {job['id']} is missing") from exc
    return load_rgb(data, s.max_image_bytes, s.max_image_pixels)
