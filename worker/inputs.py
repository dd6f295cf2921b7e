"""Getting a job's image: from storage or its URL, decoded as displayed, with the reduced copy the models see.

Pixels are numpy arrays (HWC, uint8, RGB) from the decoder to the encoder: JPEGs are decoded by libjpeg-turbo
(simplejpeg) straight into an array and overlays are encoded from one, so a 12 MP photo never makes Pillow's
RGB -> RGBX -> RGB round trip (about 50 ms each way). Other formats, and JPEGs that are not YCbCr or grey
(CMYK), go through Pillow.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import cv2
import numpy as np
import simplejpeg
from PIL import Image

from shared.errors import NotFound, SamqError
from shared.fetch import fetch
from shared.images import ImageInfo, load_rgb, peek_image
from shared.records import JobRecord
from worker.embedding import cache_key

if TYPE_CHECKING:
    from worker.runtime import Runtime

MODEL_SIDE = 1024  # SAM 2 encodes 1024x1024; Grounding DINO resizes to 800 px (at most 1333)
PIXEL_OUTPUTS = frozenset({"overlay_jpeg", "cutout_png"})  # outputs drawn from the photo's own pixels
_TURBO_COLOURS = ("YCbCr", "Gray")  # JPEG colour spaces simplejpeg turns into RGB exactly as Pillow does


def model_view(pixels: np.ndarray) -> np.ndarray:
    """What the models see: the image reduced by an integer factor while both sides stay >= 1024 px.

    Both models shrink a large photo anyway; a box-filter reduction first is cheap, and spares the pixel hash,
    SAM 2's float tensor of the full image and Grounding DINO's resize. Masks and boxes still come back in the
    full image's pixels.
    """
    height, width = pixels.shape[:2]
    factor = min(height, width) // MODEL_SIDE
    if factor < 2:
        return pixels
    return cv2.resize(pixels, (width // factor, height // factor), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True, eq=False)
class Picture:
    """A job's decoded image: what the models see, its displayed size, and its pixels when an output needs them."""

    pixels: np.ndarray  # the models' view, HWC uint8 RGB
    size: tuple[int, int]  # (width, height) as displayed: prompts, boxes and masks are in these pixels
    full_pixels: np.ndarray | None = None  # every pixel, when an output shows them
    source: str | None = None  # the embedding cache's key, when the picture was decoded from a file

    @classmethod
    def of(cls, image: Image.Image | np.ndarray) -> Picture:
        """A fully decoded image."""
        if isinstance(image, np.ndarray):
            pixels = np.ascontiguousarray(image)
        else:  # np.array, not asarray: a writeable array of its own (the overlay may be drawn on it)
            pixels = np.array(image if image.mode == "RGB" else image.convert("RGB"))
        return cls(model_view(pixels), (pixels.shape[1], pixels.shape[0]), pixels)

    @cached_property
    def view(self) -> Image.Image:
        """The models' view as a Pillow image (Grounding DINO's processor)."""
        return Image.fromarray(self.pixels)

    @cached_property
    def full(self) -> Image.Image | None:
        """Every pixel as a Pillow image, when decoded."""
        return None if self.full_pixels is None else Image.fromarray(self.full_pixels)

    @cached_property
    def key(self) -> str:
        """The embedding cache's key: the file's (see `decode`), else a hash of every pixel."""
        return self.source or cache_key(self.pixels, self.hw)

    @property
    def hw(self) -> tuple[int, int]:
        """(height, width) as displayed."""
        return self.size[1], self.size[0]


# EXIF orientation -> the array operation that shows the picture upright (as Pillow's exif_transpose).
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def decode_pixels(data: bytes, max_bytes: int, max_pixels: int, min_side: int = 0,
                  info: ImageInfo | None = None) -> np.ndarray:
    """HWC uint8 RGB as displayed (EXIF orientation applied); limits and formats checked as shared.images does.

    `min_side`: a JPEG may be decoded at a reduced scale (libjpeg's DCT scaling) while both sides stay at least
    this long; 0 decodes every pixel.
    """
    info = info or peek_image(data, max_bytes, max_pixels)  # format, size and pixel limits, from the header
    if info.format in ("JPEG", "MPO"):
        try:
            _, _, colours, _ = simplejpeg.decode_jpeg_header(data)
        except ValueError:
            colours = None
        if colours in _TURBO_COLOURS:
            # Reduce by 1/2, 1/4 or 1/8 only (as Pillow's draft mode), and only while both sides stay >= min_side.
            factor = min(info.width, info.height) // min_side if min_side else 1
            scale = 8 if factor >= 8 else 4 if factor >= 4 else 2 if factor >= 2 else 1
            stored = (info.height, info.width) if info.orientation in (5, 6, 7, 8) else (info.width, info.height)
            try:
                pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=-(-stored[0] // scale),
                                                min_height=-(-stored[1] // scale)) if scale > 1 else \
                    simplejpeg.decode_jpeg(data, colorspace="RGB")
            except ValueError:  # truncated or damaged: Pillow's decoder says what is wrong, below
                pixels = None
            if pixels is not None:
                turn = _UPRIGHT.get(info.orientation)
                return np.ascontiguousarray(turn(pixels)) if turn else pixels
    return np.array(load_rgb(data, max_bytes, max_pixels, min_side=min_side))  # writeable, like simplejpeg's


def decode(data: bytes, max_bytes: int, max_pixels: int, outputs: list[str]) -> Picture:
    """Decode for the outputs asked: a large JPEG none of whose outputs shows its pixels is decoded at reduced scale.

    The embedding cache's key is the SHA-256 of the file as sent (and the scale, when the decoder reduced it): the
    same file decodes to the same pixels, and hashing 400 KB of JPEG costs a tenth of hashing its 6 MB of pixels.
    """
    source = "file:" + hashlib.sha256(data).hexdigest()
    if PIXEL_OUTPUTS.intersection(outputs):
        full = decode_pixels(data, max_bytes, max_pixels)
        return Picture(model_view(full), (full.shape[1], full.shape[0]), full, source)
    info = peek_image(data, max_bytes, max_pixels)
    small = decode_pixels(data, max_bytes, max_pixels, MODEL_SIDE, info)
    if small.shape[:2] != (info.height, info.width):  # DCT-scaled: other pixels than a full decode reduced
        source += f":scaled:{small.shape[0]}x{small.shape[1]}"
    return Picture(model_view(small), (info.width, info.height), source=source)


def load_input(rt: Runtime, job: JobRecord) -> Picture:
    """The job's image: fetched (URL) or read from storage, decoded, EXIF-oriented."""
    s = rt.settings
    if job.input_url:
        data = fetch(job.input_url, s.max_image_bytes, s.fetch_timeout_s, s.allowed_fetch_hosts)
    else:
        try:
            data = rt.storage.get(job.input_key or "")
        except NotFound as exc:  # our fault, not the client's: a server error, retried
            raise SamqError(f"the stored input of job {job.id} is missing") from exc
    return decode(data, s.max_image_bytes, s.max_image_pixels, job.params.outputs)
