"""The overlay drawn in Pillow inside each mask's box: within 2 of the float blend it replaced, same outline."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from worker import render


def float_overlay(image: Image.Image, masks: list[np.ndarray]) -> np.ndarray:
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
def photo() -> Image.Image:
    rng = np.random.default_rng(7)
    return Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))


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
    assert np.array_equal(drawn[untouched], np.asarray(photo)[untouched])  # nothing drawn outside the masks


def test_one_mask_is_within_one_and_its_outline_exact(photo):
    mask = _masks(np.random.default_rng(1), 1)[0]
    drawn = np.asarray(render.overlay(photo, [mask]), dtype=np.int16)
    reference = float_overlay(photo, [mask]).astype(np.int16)
    assert np.abs(drawn - reference).max() <= 1
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
    before = np.asarray(photo).copy()
    copy = render.overlay(photo, [mask])
    assert np.array_equal(np.asarray(photo), before) and copy is not photo
    same = render.overlay(photo, [mask], in_place=True)
    assert same is photo and np.array_equal(np.asarray(photo), np.asarray(copy))


def test_empty_masks_draw_nothing(photo):
    assert np.array_equal(np.asarray(render.overlay(photo, [np.zeros((240, 320), bool)])), np.asarray(photo))
