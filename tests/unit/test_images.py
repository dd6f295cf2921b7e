"""Decoding base64 fields and images, limits, EXIF orientation, on real photographs too."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from harness.photos import ASTRONAUT_PNG, CHELSEA_PNG, ROCKET_JPG, jpeg_bytes
from shared.errors import InvalidRequest, TooLarge, UndecodableImage
from shared.images import decode_base64_field, load_rgb, peek_image

BIG = 10**8


def test_base64_plain_data_uri_urlsafe_and_unpadded():
    data = ROCKET_JPG.read_bytes()
    text = base64.b64encode(data).decode()
    assert decode_base64_field(text, BIG) == data
    assert decode_base64_field("data:image/jpeg;base64," + text, BIG) == data
    assert decode_base64_field(base64.urlsafe_b64encode(data).decode().rstrip("="), BIG) == data
    assert decode_base64_field(text[:60] + "\n" + text[60:], BIG) == data


def test_base64_errors():
    with pytest.raises(InvalidRequest):
        decode_base64_field("not base64 at all!!", BIG)
    with pytest.raises(InvalidRequest):
        decode_base64_field("   ", BIG)
    with pytest.raises(TooLarge):
        decode_base64_field("A" * 2000, 1000)


def test_real_photographs_decode_with_their_sizes():
    info = peek_image(ROCKET_JPG.read_bytes(), BIG, BIG)
    assert (info.format, info.width, info.height, info.content_type) == ("JPEG", 640, 427, "image/jpeg")
    assert load_rgb(ROCKET_JPG.read_bytes(), BIG, BIG).size == (640, 427)
    info = peek_image(ASTRONAUT_PNG.read_bytes(), BIG, BIG)
    assert (info.format, info.width, info.height, info.content_type) == ("PNG", 512, 512, "image/png")
    assert load_rgb(ASTRONAUT_PNG.read_bytes(), BIG, BIG).size == (512, 512)
    assert load_rgb(CHELSEA_PNG.read_bytes(), BIG, BIG).size == (451, 300)


def test_webp_and_unsupported_formats():
    img = Image.open(CHELSEA_PNG)
    buf = io.BytesIO()
    img.save(buf, "WEBP")
    assert peek_image(buf.getvalue(), BIG, BIG).format == "WEBP"
    assert load_rgb(buf.getvalue(), BIG, BIG).size == (451, 300)
    buf = io.BytesIO()
    img.save(buf, "GIF")
    for read in (peek_image, load_rgb):
        with pytest.raises(UndecodableImage, match="GIF"):
            read(buf.getvalue(), BIG, BIG)


def test_undecodable_and_truncated():
    for read in (peek_image, load_rgb):
        with pytest.raises(UndecodableImage):
            read(b"hello world", BIG, BIG)
    data = ROCKET_JPG.read_bytes()
    assert peek_image(data[: len(data) // 2], BIG, BIG).width == 640  # the header alone: the gateway accepts it
    with pytest.raises(UndecodableImage):  # and the worker's decode refuses it
        load_rgb(data[: len(data) // 2], BIG, BIG)


def test_limits():
    data = ROCKET_JPG.read_bytes()
    for read in (peek_image, load_rgb):
        with pytest.raises(TooLarge, match="bytes"):
            read(data, len(data) - 1, BIG)
        with pytest.raises(TooLarge, match="pixels"):
            read(data, BIG, 427 * 640 - 1)


def test_exif_orientation_gives_displayed_size_and_pixels():
    photo = Image.open(ROCKET_JPG)  # 640 wide, 427 high
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    data = jpeg_bytes(photo, exif=exif, quality=95)
    info = peek_image(data, BIG, BIG)
    assert (info.width, info.height, info.orientation) == (427, 640, 6)
    shown = load_rgb(data, BIG, BIG)
    assert shown.size == (427, 640)
    expected = np.asarray(photo.convert("RGB").transpose(Image.Transpose.ROTATE_270), dtype=float)
    assert np.abs(np.asarray(shown, dtype=float) - expected).mean() < 4  # only JPEG noise


def test_modes_come_out_rgb():
    base = Image.open(CHELSEA_PNG)
    for mode in ("L", "LA", "P", "RGBA", "I;16"):
        buf = io.BytesIO()
        (_sixteen_bit(base) if mode == "I;16" else base.convert(mode)).save(buf, "PNG")
        out = load_rgb(buf.getvalue(), BIG, BIG)
        assert out.mode == "RGB" and out.size == base.size
        assert np.asarray(out).std() > 10  # not flattened to one colour


def _sixteen_bit(img: Image.Image) -> Image.Image:
    return Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257)
