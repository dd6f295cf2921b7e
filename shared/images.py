"""Image decoding and limits: base64 fields, formats, sizes, EXIF orientation (Pillow only)."""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from dataclasses import dataclass
from typing import cast

from PIL import Image, ImageOps

from shared.errors import InvalidRequest, TooLarge, UndecodableImage, UnsupportedImage

# MPO is how Pillow names many phone-camera JPEGs.
SUPPORTED_FORMATS = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_DATA_URI = re.compile(r"^data:[\w.+/-]*(;[\w=.+-]+)*;base64,", re.IGNORECASE)
_ORIENTATION_TAG = 0x0112
# The detector scales the long side to 1333 px: past this ratio the short side would shrink to a few pixels.
MAX_ASPECT_RATIO = 100

# We enforce our own pixel limit before decoding; Pillow's bomb check would otherwise fire first.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class ImageInfo:
    """What the gateway learns from checking an image."""

    format: str
    content_type: str
    width: int  # as displayed, EXIF orientation applied
    height: int
    orientation: int = 1  # the EXIF orientation tag (1: stored upright)


def decode_base64_field(value: str, max_bytes: int, field: str = "image") -> bytes:
    """Decode a base64 string (a data: URI prefix allowed) into bytes, enforcing the size limit."""
    text = _DATA_URI.sub("", value.strip(), count=1)
    text = "".join(text.split())
    if not text:
        raise InvalidRequest(f"'{field}' is empty")
    if len(text) * 3 // 4 > max_bytes:
        raise TooLarge(f"'{field}' is larger than the limit of {max_bytes} bytes")
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"'{field}' is neither valid base64 nor an http(s) URL") from exc


def _open(data: bytes, max_bytes: int, max_pixels: int) -> Image.Image:
    if len(data) > max_bytes:
        raise TooLarge(f"the image is {len(data)} bytes; the limit is {max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
    except Exception as exc:
        raise UndecodableImage("the image could not be decoded (expected JPEG, PNG or WebP)") from exc
    if img.format not in SUPPORTED_FORMATS:
        raise UndecodableImage(f"unsupported image format {img.format}; use JPEG, PNG or WebP")
    width, height = img.size
    if width * height > max_pixels:
        raise TooLarge(f"the image is {width}x{height} pixels; the limit is {max_pixels} pixels")
    if width < 1 or height < 1:
        raise UndecodableImage("the image has no pixels")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise UnsupportedImage(f"the image is {width}x{height} pixels: one side may be at most {MAX_ASPECT_RATIO} "
                               "times the other")
    if (frames := getattr(img, "n_frames", 1)) > 1:
        raise UnsupportedImage(f"the image is animated ({frames} frames); send a single still image")
    return img


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:
        return 1


def peek_image(data: bytes, max_bytes: int, max_pixels: int) -> ImageInfo:
    """Format and displayed size from the header alone (no pixel decoding): the worker decodes it anyway."""
    img = _open(data, max_bytes, max_pixels)
    width, height = img.size
    orientation = _orientation(img)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    assert img.format is not None  # _open accepts only SUPPORTED_FORMATS
    return ImageInfo(img.format, SUPPORTED_FORMATS[img.format], width, height, orientation)


def load_rgb(data: bytes, max_bytes: int, max_pixels: int, min_side: int = 0) -> Image.Image:
    """Decode to an RGB image as displayed (EXIF orientation applied).

    `min_side`: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling: a fraction of a full
    decode's time) as long as both sides stay at least this long; 0 decodes every pixel.
    """
    img = _open(data, max_bytes, max_pixels)
    try:
        if min_side and img.format in ("JPEG", "MPO") and (factor := min(img.size) // min_side) >= 2:
            img.draft("RGB", (-(-img.width // factor), -(-img.height // factor)))
        img.load()
        ImageOps.exif_transpose(img, in_place=True)
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16-bit greyscale: scale to 8 bits rather than clipping (8-bit data stored as 16 stays as it is).
            # cast: Pillow types the extrema of every band count at once; these modes have one band: (low, high)
            high = cast(tuple[float, float], img.getextrema())[1]
            scale = 255 / 65535 if high > 255 else 1
            img = img.convert("I").point(lambda v: v * scale).convert("L")
        return img if img.mode == "RGB" else img.convert("RGB")  # convert() would copy an RGB image
    except Exception as exc:
        raise UndecodableImage(f"the image could not be decoded: {exc}") from exc
