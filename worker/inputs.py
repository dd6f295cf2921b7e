"""Getting a job's image: from storage or its URL, decoded as displayed."""

from __future__ import annotations

from PIL import Image

from shared.errors import NotFound, SamqError
from shared.fetch import fetch
from shared.images import load_rgb
from worker.runtime import Runtime


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
