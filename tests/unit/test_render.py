"""The overlay drawn in numpy inside each mask's box: the float blend it replaced (within 1 per overlap), same outline;
JPEGs encoded from arrays read back as Pillow's do."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from worker import render


def float_overlay(image: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    """The reference: float32 over the whole image, an exact half blend, the 4-neighbourhood outline."""
    out = np.asarray(image, dtype=np.float32).copy()
    for i, mask in enumerate(masks):
        inner = mask.copy()
        inner[1:, :] &= mask[:-1, :]
        inner[:-1, :] &= mask[1:, :]
        inner[:, 1:] &= mask[:, :-1]
        inner[:, :-1] &= mask[:, 1:]
        colour = render.PALETTE[i % len(render.PALETTE)].astype(np.float32)
        out[mask] = out[mask] * 0.5 + colour * 0.5
        out[mask & ~inner] = colour
    return out.round().astype(np.uint8)


@pytest.fixture
def photo() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (240, 320, 3), dtype=np.uint8)


def _masks(rng: np.random.Generator, n: int, shape=(240, 320)) -> list[np.ndarray]:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    masks = []
    for _ in range(n):
        cy, cx, r = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(5, 120)
        masks.append((yy - cy) ** 2 + (xx - cx) ** 2 < r * r)
    return masks


@pytest.mark.parametrize("seed", range(6))
def test_overlay_stays_within_two_of_the_float_blend(photo, seed):
    masks = _masks(np.random.default_rng(seed), 12)  # overlapping, some touching the borders, colours reused
    masks[0][:, :3] = True  # a strip on the image's edge: its outline must not run along the edge
    drawn = np.asarray(render.overlay(photo, masks), dtype=np.int16)
    reference = float_overlay(photo, masks).astype(np.int16)
    assert np.abs(drawn - reference).max() <= 2
    untouched = ~np.logical_or.reduce(masks)
    assert np.array_equal(drawn[untouched], photo[untouched])  # nothing drawn outside the masks


def test_one_mask_is_the_float_blend_exactly_and_its_outline_exact(photo):
    mask = _masks(np.random.default_rng(1), 1)[0]
    drawn = render.overlay(photo, [mask])
    assert np.array_equal(drawn, float_overlay(photo, [mask]))  # rounded half to even, as numpy's round
    outline = render.contour(mask)
    assert outline.any() and np.all(drawn[outline] == render.PALETTE[0])


def test_contour_treats_beyond_the_array_as_inside():
    mask = np.zeros((6, 6), dtype=bool)
    mask[:3, :3] = True  # the top-left corner of the picture
    expected = np.zeros_like(mask)
    expected[2, :3] = expected[:3, 2] = True  # only the sides facing the rest of the picture
    assert np.array_equal(render.contour(mask), expected)


def test_overlay_copies_unless_drawn_in_place(photo):
    mask = _masks(np.random.default_rng(2), 1)[0]
    before = photo.copy()
    copy = render.overlay(photo, [mask])
    assert np.array_equal(photo, before) and copy is not photo
    same = render.overlay(photo, [mask], in_place=True)
    assert same is photo and np.array_equal(photo, copy)
    readonly = before.copy()
    readonly.flags.writeable = False
    assert render.overlay(readonly, [mask], in_place=True) is not readonly  # never written through


def test_a_pillow_image_is_drawn_as_its_pixels(photo):
    mask = _masks(np.random.default_rng(3), 1)[0]
    assert np.array_equal(render.overlay(Image.fromarray(photo), [mask]), render.overlay(photo, [mask]))


def test_empty_masks_draw_nothing(photo):
    assert np.array_equal(render.overlay(photo, [np.zeros((240, 320), bool)]), photo)


def test_jpeg_from_an_array_is_as_faithful_as_pillows(photo):
    """libjpeg-turbo from the array, 4:2:0 at q90 as Pillow: as close to the pixels as Pillow's JPEG, no bigger."""
    smooth = np.asarray(Image.fromarray(photo).resize((640, 480), Image.BILINEAR))
    ours, pillows = render.to_jpeg(smooth), render.to_jpeg(Image.fromarray(smooth))

    def error(data: bytes) -> float:
        decoded = np.asarray(Image.open(io.BytesIO(data)), dtype=np.int16)
        assert decoded.shape == smooth.shape
        return float(np.abs(decoded - smooth).mean())

    assert error(ours) <= 1.1 * error(pillows) and len(ours) <= 1.1 * len(pillows)
