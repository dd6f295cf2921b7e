"""End to end under SAMQ_MODELS=tiny-random-sam3: a real gateway and celery worker process (which builds the random
SAM 3 into its model folder at first start), local storage. Random weights, so the detector threshold is 0."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from harness.photos import ASTRONAUT_PNG, b64
from harness.stack import Stack, new_stack, running
from tests.helpers import wait_for_job

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def sam3_stack(tmp_path_factory, redis_server) -> Stack:
    st = new_stack(5, tmp_path_factory.mktemp("sam3stack"), tmp_path_factory.mktemp("sam3models"), None,
                   SAMQ_MODELS="tiny-random-sam3", SAMQ_BOX_THRESHOLD="0")
    with running(st, {"w3": {}}):
        yield st


def _masks(stack: Stack, key: str, job: dict) -> list[dict]:
    doc = json.loads(stack.get(f"/v1/jobs/{job['id']}/result?output=json", key).content)
    assert (doc["width"], doc["height"]) == (512, 512)
    for obj in doc["objects"]:
        mask = coco_mask.decode({"size": obj["rle"]["size"], "counts": obj["rle"]["counts"].encode()})
        assert mask.shape == (512, 512) and int(mask.sum()) == obj["area"]
    return doc["objects"]


def test_sam3_end_to_end(sam3_stack):
    st, key, image = sam3_stack, sam3_stack.new_key(10), b64(ASTRONAUT_PNG)
    r = st.post("/v1/jobs", {"image": image, "prompt": ["boy", "dog"], "max_objects": 6}, key)
    assert r.status_code == 202, r.text
    assert r.json()["model"] == "tiny-random-sam3"
    text = wait_for_job(st, key, r.json()["id"], interval_s=0.2)
    assert text["status"] == "succeeded" and text["model"] == "tiny-random-sam3", text
    assert len(text["objects"]) == 6 and {o["label"] for o in text["objects"]} <= {"boy", "dog"}
    assert text["embedding"] == "computed" and text["timings"].get("detect_ms", 0) == 0  # no detector
    assert text["timings"]["encode_ms"] > 0 and text["timings"]["decode_ms"] > 0
    assert len(_masks(st, key, text)) == 6

    r = st.post("/v1/jobs", {"image": image, "exemplars": [[40, 60, 260, 330]], "max_objects": 3,
                             "negative_exemplars": [[300, 300, 480, 500]]}, key)
    assert r.status_code == 202, r.text
    exemplars = wait_for_job(st, key, r.json()["id"], interval_s=0.2)
    assert exemplars["status"] == "succeeded" and exemplars["embedding"] == "cached"  # same image: no encoder
    assert [o["label"] for o in exemplars["objects"]] == ["exemplar"] * 3

    r = st.post("/v1/jobs", {"image": image, "boxes": [[10, 10, 200, 200], [50, 50, 300, 300]]}, key)
    boxes = wait_for_job(st, key, r.json()["id"], interval_s=0.2)
    assert boxes["status"] == "succeeded" and [o["label"] for o in boxes["objects"]] == ["box", "box"]

    r = st.post("/v1/sam-v2-image", {"image": image, "prompt": "boy"}, key)  # the drop-in answers its JPEG
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", r.text[:300]
    assert int(r.headers["x-objects-found"]) >= 1
    assert Image.open(io.BytesIO(r.content)).size == (512, 512)
    r = st.post("/v1/sam-v2-image", {"image": image, "coordinates": "[100,100]", "overlay_mask": False}, key)
    assert r.status_code == 200 and np.asarray(Image.open(io.BytesIO(r.content))).shape[:2] == (512, 512)

    balance = st.balance(key)
    r = st.post("/v1/jobs", {"image": image, "exemplars": [[1, 2, 30, 40]], "coordinates": [3, 4]}, key)
    assert r.status_code == 400 and "cannot be combined with 'exemplars'" in r.json()["error"]["message"]
    r = st.post("/v1/jobs", {"image": image, "everything": True}, key)
    assert r.status_code == 400 and "SAM 2 preset" in r.json()["error"]["message"]
    assert st.balance(key) == balance  # nothing charged for either
