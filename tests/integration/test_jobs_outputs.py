"""Every prompt kind and output through the async API, downloaded from presigned S3 URLs."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import requests
from PIL import Image
from pycocotools import mask as coco_mask

from harness.photos import ASTRONAUT_PNG, ROCKET_JPG, b64
from tests.helpers import wait_for_job

ALL = ["overlay_jpeg", "mask_png", "cutout_png", "json"]


def _finish(stack, key, body):
    r = stack.post("/v1/jobs", body, key)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    return wait_for_job(stack, key, job_id, ("succeeded", "failed"), 60, interval_s=0.05)


def _download(url):
    r = requests.get(url, timeout=30)
    assert r.status_code == 200, r.text
    return r.content


def test_all_outputs_via_presigned_urls(stack, key):
    job = _finish(stack, key, {"image": b64(ASTRONAUT_PNG), "boxes": [[10, 10, 200, 200], [250, 50, 500, 400]],
                               "outputs": ALL, "polygons": True})
    assert job["status"] == "succeeded" and job["outputs"] == ALL
    urls = job["urls"]["outputs"]
    assert set(urls) == set(ALL) and all(u.startswith(stack.env["SAMQ_S3_ENDPOINT_URL"]) for u in urls.values())
    doc = json.loads(_download(urls["json"]))
    assert (doc["width"], doc["height"]) == (512, 512) and len(doc["objects"]) == 2
    labels = np.asarray(Image.open(io.BytesIO(_download(urls["mask_png"]))))
    alpha = np.asarray(Image.open(io.BytesIO(_download(urls["cutout_png"]))))[..., 3]
    assert Image.open(io.BytesIO(_download(urls["overlay_jpeg"]))).size == (512, 512)
    union = np.zeros((512, 512), dtype=bool)
    for i, obj in enumerate(doc["objects"]):
        mask = coco_mask.decode({"size": obj["rle"]["size"], "counts": obj["rle"]["counts"].encode()}).astype(bool)
        assert obj["area"] == mask.sum() and obj["polygons"] is not None and obj["box"] is not None
        assert (labels[mask] >= 1).all() and (labels[mask] <= i + 1).all()
        union |= mask
    assert np.array_equal(alpha > 0, union) and np.array_equal(labels > 0, union)
    assert [o["area"] for o in job["objects"]] == [o["area"] for o in doc["objects"]]
    # the gateway serves the same bytes
    assert stack.get(f"/v1/jobs/{job['id']}/result?output=mask_png", key).content == _download(urls["mask_png"])


def test_text_prompt_list_labels_and_thresholds(stack, key):
    job = _finish(stack, key, {"image": b64(ROCKET_JPG), "prompt": ["Rocket", "sky"], "max_objects": 2,
                               "outputs": ["json"]})
    assert job["status"] == "succeeded" and 0 < len(job["objects"]) <= 2
    assert {o["label"] for o in job["objects"]} <= {"rocket", "sky"}
    none = _finish(stack, key, {"image": b64(ROCKET_JPG), "prompt": "rocket", "box_threshold": 1.0})
    assert none["status"] == "succeeded" and none["objects"] == [] and none["objects_found"] == 0


def test_second_prompt_on_the_same_image_uses_the_cache(stack):
    key = stack.new_key(10)
    image = np.random.default_rng(7).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    body = {"image": __import__("base64").b64encode(buf.getvalue()).decode(), "outputs": ["json"]}
    first = _finish(stack, key, {**body, "coordinates": "[10,10]"})
    second = _finish(stack, key, {**body, "coordinates": "[100,100]", "multimask": "all"})
    assert (first["embedding"], second["embedding"]) == ("computed", "cached")
    assert len(second["objects"]) == 3


@pytest.mark.parametrize(("body", "field"), [
    ({"boxes": [[10, 10, 5, 5]]}, "boxes"),
    ({"boxes": [[0, 0, 700, 100]]}, "boxes"),
    ({"boxes": "[[1,2,3]]"}, "boxes"),
    ({"coordinates": [[1, 1], [2, 2]], "point_labels": [1]}, "point_labels"),
    ({"coordinates": [[1, 1]], "boxes": [[0, 0, 5, 5], [5, 5, 9, 9]]}, "coordinates"),
    ({"prompt": "x", "outputs": ["gif"]}, "outputs"),
    ({"prompt": "x", "box_threshold": 2}, "box_threshold"),
    ({"prompt": "x", "max_objects": 0}, "max_objects"),
    ({"prompt": [1, 2]}, "prompt"),
    ({"coordinates": [[1, 1]] * 65}, "coordinates"),
    ({"boxes": [[0, 0, 5, 5]] * 65}, "boxes"),
    ({"coordinates": "[1,1]", "multimask": "some"}, "multimask"),
])
def test_job_validation_names_the_field(stack, key, body, field):
    r = stack.post("/v1/jobs", {"image": b64(ROCKET_JPG), **body}, key)
    assert r.status_code == 400, r.text
    assert field in r.json()["error"]["message"]
    assert stack.balance(key) == 10
