"""The worker's decoder: JPEGs through libjpeg-turbo into arrays, exactly the pixels Pillow gives, upright by EXIF;
other formats and CMYK through Pillow; reduced-scale decoding only where no output shows the pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from harness.photos import ASTRONAUT_PNG, ROCKET_JPG, jpeg_bytes
from shared.errors import TooLarge, UndecodableImage
from shared.images import load_rgb
from worker.inputs import MODEL_SIDE, decode, decode_pixels

BIG = 1 << 30


def _with_orientation(photo: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg_bytes(photo, exif=exif, quality=92)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_pixels_are_pillows_upright(orientation):
    photo = Image.open(ROCKET_JPG).crop((0, 0, 300, 200))  # not square: every turn shows
    data = _with_orientation(photo, orientation)
    ours = decode_pixels(data, BIG, BIG)
    assert ours.dtype == np.uint8 and ours.flags.c_contiguous and ours.flags.writeable
    assert np.array_equal(ours, np.asarray(load_rgb(data, BIG, BIG)))


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grey_and_cmyk_jpegs_decode_as_pillow_does(mode):
    data = jpeg_bytes(Image.open(ROCKET_JPG).convert(mode)) if mode == "L" else _cmyk_jpeg()
    assert np.array_equal(decode_pixels(data, BIG, BIG), np.asarray(load_rgb(data, BIG, BIG)))


def _cmyk_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.open(ROCKET_JPG).convert("CMYK").save(buf, "JPEG")
    return buf.getvalue()


def test_png_goes_through_pillow():
    data = ASTRONAUT_PNG.read_bytes()
    assert np.array_equal(decode_pixels(data, BIG, BIG), np.asarray(load_rgb(data, BIG, BIG)))


def test_limits_and_damage_are_the_client_errors_they_always_were():
    data = jpeg_bytes(Image.open(ROCKET_JPG))
    with pytest.raises(TooLarge):
        decode_pixels(data, BIG, 1000)
    with pytest.raises(UndecodableImage):
        decode_pixels(data[: len(data) // 2], BIG, BIG)  # truncated: Pillow names the problem


def test_jpeg_under_twice_the_model_side_is_decoded_whole_even_for_masks():
    data = jpeg_bytes(Image.open(ROCKET_JPG).resize((2255, 1500)))
    assert decode(data, BIG, BIG, ["json"]).pixels.shape[:2] == (1500, 2255)


def test_large_jpeg_is_decoded_small_only_when_no_output_shows_its_pixels():
    photo = Image.open(ROCKET_JPG).resize((4032, 3024))
    data = _with_orientation(photo, 6)  # stored landscape, shown portrait
    masks_only = decode(data, BIG, BIG, ["json", "mask_png"])
    assert masks_only.size == (3024, 4032) and masks_only.full_pixels is None
    assert masks_only.pixels.shape[:2] == (2016, 1512)  # decoded at 1/2 (as Pillow's draft), upright, >= 1024
    overlay = decode(data, BIG, BIG, ["overlay_jpeg"])
    assert overlay.full_pixels.shape == (4032, 3024, 3) and overlay.size == (3024, 4032)
    assert min(overlay.pixels.shape[:2]) >= MODEL_SIDE and overlay.pixels.shape[0] == 4032 // 2
