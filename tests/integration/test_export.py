"""Segment everything and dataset exports through the real stack (gunicorn, celery worker, moto S3, tiny-random
models): an everything job's masks and price, a batch mixing clicks, boxes, everything and a failure exported as
COCO (read by pycocotools, every annotation the job's own mask) and as YOLO-seg, and the export's other answers."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from harness.photos import ASTRONAUT_PNG, CHELSEA_PNG, ROCKET_JPG, b64
from tests.helpers import wait_for_batch, wait_for_job

# Random weights: thresholds 0 keep masks, no NMS keeps the grid's duplicates, one candidate per point is fast.
EVERYTHING = {"points_per_side": 4, "pred_iou_thresh": 0, "stability_score_thresh": 0, "box_nms_thresh": 1,
              "multimask": False}


def _rle_mask(rle):
    return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def test_an_everything_job_finds_masks_whose_areas_match_their_rle_at_its_own_price(stack):
    key = stack.new_key(10)
    r = stack.post("/v1/jobs", {"image": b64(ASTRONAUT_PNG), "everything": EVERYTHING,
                                "outputs": ["json", "mask_png"]}, key)
    assert r.status_code == 202, r.text
    assert r.headers["x-remaining-credits"] == "6"  # SAMQ_COST_EVERYTHING, default 4
    job = wait_for_job(stack, key, r.json()["id"])
    assert job["status"] == "succeeded", job
    doc = json.loads(stack.get(f"/v1/jobs/{job['id']}/result?output=json", key).content)
    assert (doc["width"], doc["height"]) == (512, 512) and 1 <= len(doc["objects"]) <= 16
    for obj, summary in zip(doc["objects"], job["objects"], strict=True):
        mask = _rle_mask(obj["rle"])
        assert obj["label"] == summary["label"] == "object" and obj["area"] == summary["area"] == mask.sum() > 0
        assert 0 <= obj["stability_score"] <= 1 and obj["score"] == summary["score"]
        ys, xs = np.nonzero(mask)
        assert obj["box"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    scores = [o["score"] for o in doc["objects"]]
    assert scores == sorted(scores, reverse=True)
    assert job["timings"]["decode_ms"] > 0  # the point grid
    # The encoder ran unless an earlier job on this shared stack left the photo's embedding in the cache.
    assert (job["timings"]["encode_ms"] > 0) == (job["embedding"] == "computed")
    assert stack.balance(key) == 6


@pytest.fixture(scope="module")
def finished_batch(stack, image_host):
    """A batch of four: a click (mask_png only), two boxes on a URL image, everything, and a missing URL."""
    key = stack.new_key(20)  # the costs are 1 + 1 + 4 + 1, and a mixed batch needs 4 x 4 available to be accepted
    items = [
        {"image": b64(ROCKET_JPG), "coordinates": [[320, 200]], "outputs": ["mask_png"],
         "metadata": {"file_name": "rocket.jpg"}},
        {"image": f"http://{image_host}/photos/astronaut.png", "boxes": [[10, 10, 200, 200], [150, 100, 400, 300]],
         "outputs": ["json"], "metadata": {"file_name": "astronaut.png"}},
        {"image": b64(CHELSEA_PNG), "everything": EVERYTHING, "outputs": ["json"]},
        {"image": f"http://{image_host}/photos/missing.jpg", "coordinates": [[1, 1]]},
    ]
    r = stack.post("/v1/batches", {"items": items}, key)
    assert r.status_code == 202, r.text
    batch = wait_for_batch(stack, key, r.json()["id"])
    jobs = [stack.get(f"/v1/jobs/{i}", key).json() for i in r.json()["job_ids"]]
    assert [j["status"] for j in jobs] == ["succeeded", "succeeded", "succeeded", "failed"], jobs
    assert stack.balance(key) == 20 - 6  # each item its own cost; the failed one refunded
    return key, batch, jobs


def test_coco_export_loads_in_pycocotools_and_holds_every_jobs_own_masks(stack, finished_batch, tmp_path):
    key, batch, jobs = finished_batch
    r = stack.get(f"/v1/batches/{batch['id']}/export?format=coco", key)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert "attachment" in r.headers["content-disposition"]
    path = tmp_path / "annotations.json"
    path.write_bytes(r.content)
    coco = COCO(str(path))
    data = r.json()
    succeeded = jobs[:3]
    assert [(i["file_name"], i["width"], i["height"]) for i in data["images"]] == [
        ("rocket.jpg", 640, 427), ("astronaut.png", 512, 512), (f"{jobs[2]['id']}.jpg", 451, 300)]
    assert len(data["annotations"]) == sum(len(j["objects"]) for j in succeeded)  # one per object
    assert [c["name"] for c in data["categories"]] == ["points", "box", "object"]
    assert data["info"]["left_out"] == [{"job_id": jobs[3]["id"], "status": "failed", "error": "fetch_failed"}]
    # The jobs' own masks: the click job's from its mask_png (its only output), the others' from their json.
    own = [[np.asarray(Image.open(io.BytesIO(stack.get(f"/v1/jobs/{jobs[0]['id']}/result?output=mask_png",
                                                       key).content))) == 1]]
    for job in succeeded[1:]:
        doc = json.loads(stack.get(f"/v1/jobs/{job['id']}/result?output=json", key).content)
        own.append([_rle_mask(o["rle"]) for o in doc["objects"]])
    for image, masks in zip(data["images"], own, strict=True):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        assert len(anns) == len(masks)
        for ann, mask in zip(anns, masks, strict=True):
            decoded = coco.annToMask(ann).astype(bool)
            assert decoded.shape == (image["height"], image["width"]) and np.array_equal(decoded, mask)
            assert ann["area"] == mask.sum() and ann["iscrowd"] == 0
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_yolo_export_has_one_label_file_per_image_with_normalised_polygons(stack, finished_batch):
    key, batch, jobs = finished_batch
    r = stack.get(f"/v1/batches/{batch['id']}/export?format=yolo", key)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.testzip() is None
        files = {name: zf.read(name).decode() for name in zf.namelist()}
    labels = sorted(n for n in files if n.startswith("labels/"))
    assert labels == sorted(["labels/rocket.txt", "labels/astronaut.txt", f"labels/{jobs[2]['id']}.txt"])
    assert 'names:\n  0: "points"\n  1: "box"\n  2: "object"\n' in files["data.yaml"]
    for name, job, cls in zip(["labels/rocket.txt", "labels/astronaut.txt", f"labels/{jobs[2]['id']}.txt"],
                              jobs, ["0", "1", "2"], strict=False):
        lines = files[name].splitlines()
        assert len(lines) == sum(1 for o in job["objects"] if o["area"] > 0)
        for line in lines:
            head, *coords = line.split()
            assert head == cls and len(coords) >= 6 and len(coords) % 2 == 0
            assert all(0 <= float(v) <= 1 for v in coords)
    assert json.loads(files["info.json"])["left_out"][0]["job_id"] == jobs[3]["id"]


def test_export_answers_unknown_format_other_keys_and_expired_batches(stack, finished_batch):
    key, batch, _ = finished_batch
    r = stack.get(f"/v1/batches/{batch['id']}/export?format=voc", key)
    assert r.status_code == 400 and "'format'" in r.json()["error"]["message"]
    r = stack.get(f"/v1/batches/{batch['id']}/export", stack.new_key(1))
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = stack.get(f"/v1/batches/{'0' * 11}{'ab' * 16}/export", key)  # an id made in 1970: past its retention
    assert r.status_code == 404 and r.json()["error"]["code"] == "expired"
    assert stack.get(f"/v1/batches/{batch['id']}/export", key).json()["images"]  # coco is the default


def test_export_of_a_batch_with_jobs_not_ended_is_409_not_finished(bare):
    key = bare.new_key(5)
    r = bare.post("/v1/batches", {"items": [{"image": b64(ROCKET_JPG), "coordinates": [[10, 10]]}]}, key)
    assert r.status_code == 202, r.text
    r = bare.get(f"/v1/batches/{r.json()['id']}/export?format=yolo", key)
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_finished"
