"""The SAM 3 engine in-process (tiny-random-sam3, built and loaded through the production loaders): text, several
phrases on one vision pass, exemplars, clicks, boxes, the cache, the device thread's batching, and fidelity to the
official transformers calls (processor -> model -> post-processing) in fp32. Random weights: threshold 0."""

from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as coco_mask

from harness.photos import ASTRONAUT_PNG
from harness.procs import wait_until
from shared.errors import InvalidRequest, ModelsMissing
from shared.records import Params
from shared.settings import Settings
from tests.helpers import Gated
from worker import pipeline, sam3_pipeline
from worker.device import Device
from worker.embedding import EmbeddingCache
from worker.inputs import Picture
from worker.metrics import Timings
from worker.models.registry import load_models

ALL = ["overlay_jpeg", "mask_jpeg", "mask_png", "cutout_png", "json"]
LIMITS = pipeline.Thresholds(box=0.0, text=0.0, max_objects=100)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return load_models(Settings(models="tiny-random-sam3", model_dir=tmp_path_factory.mktemp("m3"), device="cpu",
                                dtype="fp32", embed_cache_mb=256))


@pytest.fixture
def engine(models):
    """The engine with an empty cache of its own (other tests must not decide what is cached)."""
    models.sam3.cache = EmbeddingCache(1 << 30)
    return models.sam3


@pytest.fixture(scope="module")
def astronaut():
    return Image.open(ASTRONAUT_PNG).convert("RGB")


def _run(engine, image, **params):
    params.setdefault("outputs", ALL)
    return sam3_pipeline.run(engine, image, Params(**params), LIMITS)


def _check_outputs(outcome, image):
    files = outcome.files
    assert set(files) == set(ALL)
    for name in ("overlay_jpeg", "mask_jpeg", "mask_png", "cutout_png"):
        assert Image.open(io.BytesIO(files[name][0])).size == image.size
    doc = json.loads(files["json"][0])
    assert (doc["width"], doc["height"]) == image.size and len(doc["objects"]) == len(outcome.objects)
    for obj, o in zip(doc["objects"], outcome.objects, strict=True):
        assert o.mask.shape == image.size[::-1] and o.mask.dtype == bool
        decoded = coco_mask.decode({"size": obj["rle"]["size"], "counts": obj["rle"]["counts"].encode()})
        assert np.array_equal(decoded.astype(bool), o.mask) and obj["area"] == int(o.mask.sum())
    return doc


def test_the_preset_loads_both_heads_sharing_one_backbone(models):
    assert models.preset.engine == "sam3" and models.sam is None and models.dino is None
    assert models.embedder is models.sam3
    assert models.sam3.tracker.vision_encoder.backbone is models.sam3.model.vision_encoder.backbone


def test_text_prompt_returns_every_instance_labelled(engine, astronaut):
    outcome = _run(engine, astronaut, prompt="boy", max_objects=7, polygons=True)
    assert len(outcome.objects) == 7 and {o.label for o in outcome.objects} == {"boy"}
    scores = [o.score for o in outcome.objects]
    assert scores == sorted(scores, reverse=True)
    _check_outputs(outcome, astronaut)
    none = _run(engine, astronaut, prompt="boy", box_threshold=1.0)  # nothing scores 1: nothing kept
    assert none.objects == [] and json.loads(none.files["json"][0])["objects"] == []


def test_several_phrases_encode_the_image_once(engine, astronaut):
    texts = []
    hook = engine.model.text_encoder.register_forward_hook(lambda *_: texts.append(1))
    try:
        calls = engine.encoder_calls
        outcome = _run(engine, astronaut, prompt=["Boy", "dog", "a cat"])
    finally:
        hook.remove()
    assert engine.encoder_calls == calls + 1 and len(texts) == 3  # one vision pass, one text pass per phrase
    assert {o.label for o in outcome.objects} == {"boy", "dog", "a cat"}
    assert len(outcome.objects) == 3 * 20  # every query of every phrase at threshold 0 (20 queries)
    _check_outputs(outcome, astronaut)


def test_a_second_prompt_on_the_same_image_skips_the_encoder(engine, astronaut):
    first = _run(engine, astronaut, prompt="boy")
    calls = engine.encoder_calls
    second = _run(engine, astronaut, prompt="dog")
    clicks = _run(engine, astronaut, points=[[100, 100]], labels=[1])  # the tracker head reuses them too
    again = _run(engine, astronaut, prompt="boy")
    assert not first.cache_hit and second.cache_hit and clicks.cache_hit and again.cache_hit
    assert engine.encoder_calls == calls
    assert all(np.array_equal(a.mask, b.mask) and a.score == b.score
               for a, b in zip(first.objects, again.objects, strict=True))


def test_exemplars_with_and_without_text(engine, astronaut):
    alone = _run(engine, astronaut, exemplars=[[50, 50, 250, 300]], negative_exemplars=[[300, 300, 500, 500]],
                 max_objects=5)
    assert len(alone.objects) == 5 and {o.label for o in alone.objects} == {"exemplar"}
    _check_outputs(alone, astronaut)
    with_text = _run(engine, astronaut, prompt="boy", exemplars=[[50, 50, 250, 300]], max_objects=5)
    plain = _run(engine, astronaut, prompt="boy", max_objects=5)
    assert {o.label for o in with_text.objects} == {"boy"}
    assert [o.score for o in with_text.objects] != [o.score for o in plain.objects]  # the boxes change the answer
    with pytest.raises(InvalidRequest, match="exemplars"):
        _run(engine, astronaut, exemplars=[[50, 50, 600, 300]])


def test_clicks_and_boxes_through_the_tracker(engine, astronaut):
    one = _run(engine, astronaut, points=[[100, 100]], labels=[1])
    assert len(one.objects) == 1 and one.objects[0].label == "points"
    _check_outputs(one, astronaut)
    every = _run(engine, astronaut, points=[[100, 100]], labels=[1], multimask="all")
    assert len(every.objects) == 3 and np.array_equal(every.objects[0].mask, one.objects[0].mask)
    boxes = [[10, 10, 200, 200], [50, 50, 300, 300], [300, 20, 500, 400]]
    many = _run(engine, astronaut, boxes=boxes)
    assert [o.box for o in many.objects] == boxes and all(o.label == "box" for o in many.objects)
    _check_outputs(many, astronaut)
    refined = _run(engine, astronaut, boxes=[boxes[0]], points=[[100, 100]], labels=[0])
    assert len(refined.objects) == 1
    with pytest.raises(InvalidRequest, match="outside"):
        _run(engine, astronaut, points=[[900, 100]], labels=[1])


def test_everything_is_refused_under_sam3(engine, astronaut):
    with pytest.raises(InvalidRequest, match="SAM 2"):
        _run(engine, astronaut, everything={"points_per_side": 4})


# -- fidelity: the official calls on the same weights, fp32 --

def _official_concept(engine, image, threshold, **kwargs):
    inputs = engine.processor(images=image, return_tensors="pt", **kwargs)
    with torch.inference_mode():
        outputs = engine.model(**{k: v for k, v in inputs.items() if k != "original_sizes"})
    result = engine.processor.post_process_instance_segmentation(outputs, threshold=threshold, mask_threshold=0.5,
                                                                 target_sizes=[image.size[::-1]])[0]
    order = torch.argsort(result["scores"], descending=True)
    return result["scores"][order].numpy(), result["boxes"][order].numpy(), result["masks"][order].bool().numpy()


@pytest.mark.parametrize("kind", ["text", "exemplars", "text+exemplars"])
def test_concept_head_equals_the_official_calls(engine, astronaut, kind):
    box, negative = [40, 60, 260, 330], [300, 300, 480, 500]
    params = {"text": {"prompt": "boy"}, "exemplars": {"exemplars": [box], "negative_exemplars": [negative]},
              "text+exemplars": {"prompt": "boy", "exemplars": [box]}}[kind]
    official_kwargs = {"text": {"text": "boy"},
                       "exemplars": {"input_boxes": [[box, negative]], "input_boxes_labels": [[1, 0]]},
                       "text+exemplars": {"text": "boy", "input_boxes": [[box]], "input_boxes_labels": [[1]]}}[kind]
    ours = _run(engine, astronaut, outputs=["json"], **params).objects
    scores, boxes, masks = _official_concept(engine, astronaut, 0.0, **official_kwargs)
    assert len(ours) == len(scores) == 20
    assert np.allclose([o.score for o in ours], scores, atol=1e-4)
    assert np.allclose([o.box for o in ours], boxes, atol=0.06)  # ours are rounded to 0.1 px
    for o, m in zip(ours, masks, strict=True):
        assert np.array_equal(o.mask, m)


@pytest.mark.parametrize("kind", ["click", "clicks", "boxes", "box+click"])
def test_tracker_head_equals_the_official_calls(engine, astronaut, kind):
    params, official, multimask = {
        "click": ({"points": [[120, 140]], "labels": [1]},
                  {"input_points": [[[[120, 140]]]], "input_labels": [[[1]]]}, True),
        "clicks": ({"points": [[120, 140], [300, 320]], "labels": [1, 0]},
                   {"input_points": [[[[120, 140], [300, 320]]]], "input_labels": [[[1, 0]]]}, False),
        "boxes": ({"boxes": [[10, 10, 200, 200], [50, 50, 300, 300]]},
                  {"input_boxes": [[[10, 10, 200, 200], [50, 50, 300, 300]]]}, False),
        "box+click": ({"boxes": [[10, 10, 200, 200]], "points": [[100, 100]], "labels": [0]},
                      {"input_boxes": [[[10, 10, 200, 200]]], "input_points": [[[[100, 100]]]],
                       "input_labels": [[[0]]]}, False),
    }[kind]
    ours = _run(engine, astronaut, outputs=["json"], **params).objects
    inputs = engine.tracker_processor(images=astronaut, return_tensors="pt", **official)
    with torch.inference_mode():
        out = engine.tracker(**{k: v for k, v in inputs.items() if k != "original_sizes"},
                             multimask_output=multimask)
    masks = engine.tracker_processor.post_process_masks(out.pred_masks, inputs["original_sizes"])[0].numpy()
    scores = out.iou_scores[0].numpy()
    best = scores.argmax(axis=1)
    assert len(ours) == len(best)
    for o, m, s, b in zip(ours, masks, scores, best, strict=True):
        assert np.array_equal(o.mask, m[b]) and abs(o.score - s[b]) < 1e-4


# -- the device thread --

def test_device_thread_batches_the_vision_encoder_across_jobs(models, engine, astronaut):
    base = np.asarray(astronaut)
    pictures = [Picture.of(Image.fromarray(np.roll(base, 37 * i, axis=1))) for i in range(4)]
    jobs = [Params(prompt="boy"), Params(prompt=["dog", "cat"]), Params(points=[[100, 100]], labels=[1]),
            Params(exemplars=[[10, 10, 200, 200]])]
    gated = Gated(replace(models))
    device = Device(gated, LIMITS, max_batch=4)
    answers: dict = {}
    timings = [Timings() for _ in jobs]

    def submit(i: int) -> threading.Thread:
        thread = threading.Thread(target=lambda: answers.__setitem__(i, device.segment(pictures[i], jobs[i], 1,
                                                                                       timings[i])))
        thread.start()
        return thread

    threads = [submit(0)]
    wait_until(lambda: gated.calls == 1, 10, "the device thread holding the first job")
    threads += [submit(i) for i in (1, 2, 3)]
    wait_until(lambda: len(device._waiting) == 3, 10, "three requests waiting")
    calls = engine.encoder_calls
    gated.gate.set()
    for thread in threads:
        thread.join(60)
    assert engine.encoder_calls == calls + 2  # the first alone, then three images in one call
    assert answers[0].batch is None and all(answers[i].batch == 3 for i in (1, 2, 3))
    assert all(t.seconds.get("encode", 0) > 0 and t.seconds.get("decode", 0) > 0 and "detect" not in t.seconds
               for t in timings)
    for i in range(4):  # the same objects as the calling thread (features from the cache now)
        here, hit = sam3_pipeline.segment(engine, pictures[i], jobs[i], LIMITS)
        assert hit and len(here) == len(answers[i].objects) > 0
        assert all(np.array_equal(a.mask, b.mask) and a.score == b.score and a.label == b.label
                   for a, b in zip(here, answers[i].objects, strict=True))


def test_cpu_time_per_text_prompt(engine, astronaut):
    """Not a benchmark (bench/RESULTS.md has the figures): a tiny-random text call stays well under a second."""
    _run(engine, astronaut, prompt="boy", outputs=["json"])
    started = time.perf_counter()
    for phrase in ("dog", "cat", "car"):
        _run(engine, astronaut, prompt=phrase, outputs=["json"])
    assert (time.perf_counter() - started) / 3 < 1.0


def test_sam3_without_its_weights_fails_clearly(tmp_path):
    with pytest.raises(ModelsMissing, match=r"(?s)sam3/model.safetensors.*make models PRESET=sam3.*HF_TOKEN"):
        load_models(Settings(models="sam3", model_dir=tmp_path, device="cpu"))
