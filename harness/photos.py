"""Real photographs for the tests and the benchmarks, and the small codecs around them."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import skimage
from PIL import Image

# Real photographs shipped inside scikit-image (see harness/PHOTOS.md for their licences).
PHOTO_DIR = Path(skimage.__file__).parent / "data"
ROCKET_JPG = PHOTO_DIR / "rocket.jpg"  # 640x427 JPEG photograph, NASA, public domain
ASTRONAUT_PNG = PHOTO_DIR / "astronaut.png"  # 512x512 RGB PNG photograph, NASA, public domain
CHELSEA_PNG = PHOTO_DIR / "chelsea.png"  # 451x300 PNG photograph of a cat, CC0


def b64(path: Path) -> str:
    """A file as base64 text."""
    return base64.b64encode(path.read_bytes()).decode()


def jpeg_bytes(image: Image.Image, **save: object) -> bytes:
    """Encode an image as JPEG."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", **save)
    return buf.getvalue()


def open_image(data: bytes) -> Image.Image:
    """Decode bytes to a loaded PIL image."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return img
