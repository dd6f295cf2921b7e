"""The inference pipeline in-process, through the production loaders, with tiny random weights."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as coco_mask

from harness.photos import ASTRONAUT_PNG, ROCKET_JPG, jpeg_bytes
from shared.images import load_rgb
from shared.records import Params
from shared.settings import Settings
from shared.weights import get_preset
from worker import pipeline
from worker.embedding import Embedder, EmbeddingCache
from worker.models.registry import load_models, resolve_dtype
from worker.models.sam import load_sam

ALL = ["overlay_jpeg", "mask_jpeg", "mask_png", "cutout_png", "json"]
LIMITS = pipeline.Thresholds(box=0.35, text=0.25, max_objects=100)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    settings = Settings(models="tiny-random", model_dir=tmp_path_factory.mktemp("m"), embed_cache_mb=64)
    return load_models(settings)


@pytest.fixture
def astronaut():
    return Image.open(ASTRONAUT_PNG).convert("RGB")


def _decode(files, name):
    img = Image.open(io.BytesIO(files[name][0]))
    img.load()
    return img


def _run(models, image, **params):
    params.setdefault("points", [])
    params.setdefault("labels", [])
    params.setdefault("boxes", [])
    params.setdefault("outputs", ALL)
    return pipeline.run(models.embedder, models.dino, image, Params(**params), LIMITS)


def _check_outputs(outcome, image):
    files = outcome.files
    masks = [o.mask for o in outcome.objects]
    assert set(files) == set(ALL)
    for name in ("overlay_jpeg", "mask_jpeg", "mask_png", "cutout_png"):
        assert _decode(files, name).size == image.size
    labels = np.asarray(_decode(files, "mask_png"))
    assert labels.ndim == 2 and labels.max() <= len(masks)
    for i, mask in enumerate(masks):  # PNG values match objects (earlier objects win overlaps)
        covered_before = np.zeros_like(mask)
        for m in masks[:i]:
            covered_before |= m
        assert (labels[mask & ~covered_before] == i + 1).all()
    union = np.zeros(image.size[::-1], dtype=bool)
    for m in masks:
        union |= m
    cutout = np.asarray(_decode(files, "cutout_png"))
    assert cutout.shape[2] == 4 and np.array_equal(cutout[..., 3] > 0, union)
    assert np.array_equal(cutout[..., :3][union], np.asarray(image)[union])
    doc = json.loads(files["json"][0])
    assert (doc["width"], doc["height"]) == image.size and len(doc["objects"]) == len(masks)
    for obj, mask in zip(doc["objects"], masks, strict=True):
        decoded = coco_mask.decode({"size": obj["rle"]["size"], "counts": obj["rle"]["counts"].encode()})
        assert np.array_equal(decoded.astype(bool), mask) and obj["area"] == int(mask.sum())
    return doc


def test_text_prompt_several_phrases(models, astronaut):
    outcome = _run(models, astronaut, prompt=["Boy", "dog"], max_objects=4, polygons=True)
    assert 0 < len(outcome.objects) <= 4
    assert {o.label for o in outcome.objects} <= {"boy", "dog"}
    doc = _check_outputs(outcome, astronaut)
    assert all(obj["polygons"] and len(obj["polygons"][0]) >= 6 for obj in doc["objects"] if obj["area"])


def test_thresholds_can_find_nothing(models, astronaut):
    outcome = _run(models, astronaut, prompt="boy", box_threshold=1.0)
    assert outcome.objects == [] and outcome.found == 0
    # The picture itself: as close to its pixels as Pillow's own q90 JPEG of it (the encoders differ in rounding).
    source = np.asarray(astronaut, float)
    pillows = np.abs(np.asarray(Image.open(io.BytesIO(jpeg_bytes(astronaut, quality=90))), float) - source).mean()
    ours = np.abs(np.asarray(_decode(outcome.files, "overlay_jpeg"), float) - source).mean()
    assert ours <= 1.05 * pillows < 3
    assert json.loads(outcome.files["json"][0])["objects"] == []


def test_points_negative_points_and_multimask(models, astronaut):
    one = _run(models, astronaut, points=[[100, 100]], labels=[1])
    assert len(one.objects) == 1 and one.objects[0].label == "points"
    _check_outputs(one, astronaut)
    with_negative = _run(models, astronaut, points=[[100, 100], [300, 300]], labels=[1, 0])
    assert not np.array_equal(one.objects[0].mask, with_negative.objects[0].mask)
    every = _run(models, astronaut, points=[[100, 100]], labels=[1], multimask="all")
    assert len(every.objects) == 3 and [o.score for o in every.objects] == sorted(
        [o.score for o in every.objects], reverse=True)
    assert np.array_equal(every.objects[0].mask, one.objects[0].mask)  # "best of 3" is the first of all 3


def test_boxes_batched_and_box_with_points(models, astronaut):
    boxes = [[10, 10, 200, 200], [50, 50, 300, 300], [300, 20, 500, 400]]
    many = _run(models, astronaut, boxes=boxes)
    assert [o.box for o in many.objects] == boxes and all(o.label == "box" for o in many.objects)
    _check_outputs(many, astronaut)
    singles = [_run(models, astronaut, boxes=[b]).objects[0].mask for b in boxes]
    assert all(np.array_equal(a.mask, b) for a, b in zip(many.objects, singles, strict=True))
    refined = _run(models, astronaut, boxes=[boxes[0]], points=[[100, 100]], labels=[0])
    assert len(refined.objects) == 1 and not np.array_equal(refined.objects[0].mask, singles[0])


def test_cache_skips_the_encoder_and_changes_nothing(models, astronaut):
    cached = Embedder(models.sam, EmbeddingCache(10**9))  # its own cache: empty whatever other tests ran before
    fresh = Embedder(models.sam, EmbeddingCache(0))  # the cache off

    def click(embedder, point):
        return pipeline.run(embedder, models.dino, astronaut, Params(points=[point], labels=[1], outputs=["json"]),
                            LIMITS)

    first = click(cached, [120, 80])
    assert not first.cache_hit and cached.encoder_calls == 1
    second, again = click(cached, [300, 300]), click(cached, [120, 80])
    assert second.cache_hit and again.cache_hit and cached.encoder_calls == 1  # the encoder ran once for three
    assert not np.array_equal(second.objects[0].mask, first.objects[0].mask)  # the cached embedding, new prompt
    uncached = click(fresh, [120, 80])
    assert not uncached.cache_hit and fresh.encoder_calls == 1
    assert np.array_equal(uncached.objects[0].mask, again.objects[0].mask)  # bit-identical with and without
    assert np.array_equal(first.objects[0].mask, again.objects[0].mask)


def test_cache_is_bounded_by_bytes(models):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    probe = Embedder(models.sam, EmbeddingCache(10**9))
    probe.set_image(images[0])
    size = probe.cache.bytes
    small = Embedder(models.sam, EmbeddingCache(2 * size))
    for img in images:
        assert small.set_image(img) is False
    assert len(small.cache) == 2 and small.cache.bytes == 2 * size
    assert small.set_image(images[2]) is True and small.set_image(images[0]) is False  # the oldest was evicted


def test_batched_encoding_matches_one_at_a_time(models):
    images = [np.asarray(Image.open(ASTRONAUT_PNG).convert("RGB")),
              np.asarray(Image.open(ROCKET_JPG).convert("RGB"))]  # two sizes in one batch
    batched = Embedder(models.sam, EmbeddingCache(10**9))
    assert len(batched.prefill(images)) == 2 and batched.encoder_calls == 1
    assert batched.prefill(images) == []  # already there
    single = Embedder(models.sam, EmbeddingCache(0))
    for pixels in images:
        assert batched.set_image(pixels) is True
        a, _, _ = models.sam.predict(point_coords=np.array([[50.0, 60.0]]), point_labels=np.array([1]))
        single.set_image(pixels)
        b, _, _ = models.sam.predict(point_coords=np.array([[50.0, 60.0]]), point_labels=np.array([1]))
        assert a.shape == b.shape and np.mean(a == b) > 0.999  # batched kernels may differ in the last bits


def test_exif_rotated_input_gives_rotated_correct_result(models):
    photo = Image.open(ROCKET_JPG)
    exif = Image.Exif()
    exif[0x0112] = 6
    shown = load_rgb(jpeg_bytes(photo, exif=exif, quality=95), 10**8, 10**8)
    upright = load_rgb(jpeg_bytes(photo.transpose(Image.Transpose.ROTATE_270), quality=95), 10**8, 10**8)
    a = _run(models, shown, points=[[200, 500]], labels=[1], outputs=["mask_png"])
    b = _run(models, upright, points=[[200, 500]], labels=[1], outputs=["mask_png"])
    assert _decode(a.files, "mask_png").size == (427, 640)
    assert np.mean(a.objects[0].mask == b.objects[0].mask) > 0.98  # same picture, same answer


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK"])
def test_any_image_mode_renders_at_full_size(models, mode):
    source = Image.open(ASTRONAUT_PNG).convert(mode)
    buf = io.BytesIO()
    source.save(buf, "JPEG" if mode == "CMYK" else "PNG")
    image = load_rgb(buf.getvalue(), 10**8, 10**8)
    outcome = _run(models, image, points=[[256, 256]], labels=[1])
    _check_outputs(outcome, image)


def test_loading_is_strict(models, tmp_path):
    preset = get_preset("tiny-random")
    ckpt = tmp_path / "sam2.pt"
    full = dict(models.sam.model.state_dict())
    torch.save({"model": dict(list(full.items())[1:])}, ckpt)  # one key missing
    with pytest.raises(RuntimeError):
        load_sam(preset.sam_config, ckpt, "cpu", preset.sam_overrides)
    torch.save({"model": {**full, "extra.weight": torch.zeros(1)}}, ckpt)  # one key too many
    with pytest.raises(RuntimeError):
        load_sam(preset.sam_config, ckpt, "cpu", preset.sam_overrides)
    with pytest.raises(FileNotFoundError):
        load_sam(preset.sam_config, tmp_path / "nope.pt", "cpu", preset.sam_overrides)


def test_precision_defaults():
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda") == torch.bfloat16
    with pytest.raises(ValueError):
        resolve_dtype("fp8", "cpu")


def test_grounding_dino_loading_is_strict_too(models, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from worker.models.dino import load_dino

    folder = tmp_path / "dino"
    models.dino.model.save_pretrained(folder)
    models.dino.processor.save_pretrained(folder)
    weights = folder / "model.safetensors"
    state = load_file(weights)
    save_file({k: v for k, v in list(state.items())[1:]}, weights, metadata={"format": "pt"})
    with pytest.raises(RuntimeError, match="does not match"):
        load_dino(folder, "cpu")
    shutil.rmtree(folder)
    with pytest.raises(FileNotFoundError):
        load_dino(folder, "cpu")


def test_corrupt_sam_checkpoint_is_named(tmp_path):
    preset = get_preset("tiny-random")
    ckpt = tmp_path / "sam2.pt"
    ckpt.write_bytes(b"not a checkpoint at all" * 100)
    with pytest.raises(RuntimeError, match="sam2.pt"):
        load_sam(preset.sam_config, ckpt, "cpu", preset.sam_overrides)


def test_prompts_are_normalised_for_grounding_dino():
    from worker.models.dino import normalize_prompt

    assert normalize_prompt("Boy") == "boy ."
    assert normalize_prompt("boy. Dog") == "boy . dog ."
    assert normalize_prompt("A  Red   Car, tree;sky\n") == "a red car . tree . sky ."
    assert normalize_prompt(["Boy", " dog "]) == "boy . dog ."
    assert normalize_prompt(" . , ") == ""


def test_bf16_autocast_path_runs(tmp_path_factory, astronaut):
    settings = Settings(models="tiny-random", model_dir=tmp_path_factory.mktemp("bf16"), dtype="bf16")
    half = load_models(settings)
    assert half.dtype == torch.bfloat16
    # Thresholds of 0 keep every box the detector proposes: the cap, not the random weights, decides the count.
    outcome = _run(half, astronaut, prompt="boy", max_objects=2, box_threshold=0.0, text_threshold=0.0)
    assert len(outcome.objects) == 2 and [o.label for o in outcome.objects] == ["boy", "boy"]
    assert all(o.mask.shape == (512, 512) and o.mask.dtype == bool for o in outcome.objects)
    _check_outputs(outcome, astronaut)
    clicks = _run(half, astronaut, points=[[100, 100]], labels=[1])
    assert clicks.objects[0].mask.dtype == bool
