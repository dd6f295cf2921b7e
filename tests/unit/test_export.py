"""Dataset export builders, pure: masks.json as the worker keeps it (worker/export.kept_masks) -> the gateway's
streamed COCO file and YOLO-seg zip (gateway/export.py) -> read back with pycocotools and parsed line by line;
and the client's merge of several chunks' exports."""

from __future__ import annotations

import io
import json
import zipfile

import cv2
import numpy as np
import pytest
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from samq_client.batch import _yaml_names, merge_coco, write_yolo

from gateway import export
from worker.export import kept_masks, yolo_polygon
from worker.pipeline import Object

BATCH = {"id": "b1", "total": 5}


def _masks(seed: int, width: int = 64, height: int = 48) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    ring = np.zeros((height, width), bool)
    ring[5:30, 5:40] = True
    ring[10:20, 12:25] = False  # a hole
    parts = np.zeros((height, width), bool)
    parts[2:6, 50:60] = True
    parts[35:45, 3:9] = True  # two parts
    pixel = np.zeros((height, width), bool)
    pixel[height - 1, width - 1] = True  # one pixel in the corner
    noise = rng.random((height, width)) > 0.7
    return [ring, parts, pixel, noise]


def _doc(seed: int, labels: list[str], width: int = 64, height: int = 48) -> tuple[dict, list[np.ndarray]]:
    masks = _masks(seed, width, height)[: len(labels)]
    objects = [Object(label, 0.5 + i / 10, m, None, stability_score=0.9 if label == "object" else None)
               for i, (label, m) in enumerate(zip(labels, masks, strict=True))]
    return json.loads(kept_masks((width, height), objects)), masks


def _entries():
    a, ma = _doc(1, ["car", "object", "car", "object"])
    b, mb = _doc(2, ["object", "tree"], 80, 60)
    empty = {"width": 10, "height": 10, "objects": []}
    return [export.Entry("j1", "succeeded", {"file_name": "photos/cat.jpg"}, None, a),
            export.Entry("j2", "failed", None, "undecodable_image"),
            export.Entry("j3", "succeeded", None, None, b),
            export.Entry("j4", "canceled"),
            export.Entry("j5", "succeeded", {"file_name": "blank.png"}, None, empty)], [ma, mb, []]


def test_coco_loads_in_pycocotools_and_every_annotation_is_the_jobs_own_mask(tmp_path):
    entries, masks = _entries()
    path = tmp_path / "a.json"
    path.write_bytes(b"".join(export.coco(BATCH, iter(entries))))
    data = json.loads(path.read_text())
    coco = COCO(str(path))
    assert [c["name"] for c in data["categories"]] == ["car", "object", "tree"]  # ids from 1, first appearance
    assert [c["id"] for c in data["categories"]] == [1, 2, 3]
    assert [(i["file_name"], i["width"], i["height"]) for i in data["images"]] == [
        ("photos/cat.jpg", 64, 48), ("j3.jpg", 80, 60), ("blank.png", 10, 10)]
    assert len(data["annotations"]) == 6 and [a["id"] for a in data["annotations"]] == list(range(1, 7))
    expected = [(1, m) for m in masks[0]] + [(2, m) for m in masks[1]]
    for ann, (image_id, mask) in zip(data["annotations"], expected, strict=True):
        assert ann["image_id"] == image_id and ann["iscrowd"] == 0 and isinstance(ann["segmentation"]["counts"], str)
        assert np.array_equal(coco.annToMask(ann).astype(bool), mask)
        assert ann["area"] == int(mask.sum())
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                               int(ys.max() - ys.min() + 1)]
        assert ann["bbox"] == [int(v) for v in coco_mask.toBbox(ann["segmentation"])]
    assert data["annotations"][1]["stability_score"] == 0.9 and "stability_score" not in data["annotations"][0]
    assert data["info"]["left_out"] == [{"job_id": "j2", "status": "failed", "error": "undecodable_image"},
                                        {"job_id": "j4", "status": "canceled"}]


def test_coco_of_a_batch_with_nothing_in_it_is_still_valid():
    data = json.loads(b"".join(export.coco(BATCH, iter([export.Entry("j", "failed")]))))
    assert data["images"] == [] and data["annotations"] == [] and data["categories"] == []
    expired = json.loads(b"".join(export.coco(BATCH, iter([export.Entry("j", "succeeded")]))))
    assert expired["info"]["left_out"] == [{"job_id": "j", "status": "succeeded", "error": "masks_not_kept"}]


def _read_zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        return {name: zf.read(name) for name in zf.namelist()}


def test_yolo_zip_has_one_label_file_per_image_and_every_line_parses():
    entries, _ = _entries()
    files = _read_zip(b"".join(export.yolo(BATCH, iter(entries))))
    assert sorted(files) == ["data.yaml", "info.json", "labels/blank.txt", "labels/cat.txt", "labels/j3.txt"]
    names = _yaml_names(files["data.yaml"].decode())
    assert names == {0: "car", 1: "object", 2: "tree"} and "nc: 3" in files["data.yaml"].decode()
    assert files["labels/blank.txt"] == b""
    for name in ("labels/cat.txt", "labels/j3.txt"):
        lines = files[name].decode().splitlines()
        assert len(lines) == (4 if "cat" in name else 2)
        for line in lines:
            cls, *coords = line.split()
            assert int(cls) in names and len(coords) >= 6 and len(coords) % 2 == 0
            assert all(0.0 <= float(v) <= 1.0 for v in coords)
    assert [c.split()[0] for c in files["labels/cat.txt"].decode().splitlines()] == ["0", "1", "0", "1"]
    info = json.loads(files["info.json"])
    assert [f["label_file"] for f in info["files"]] == ["labels/cat.txt", "labels/j3.txt", "labels/blank.txt"]
    assert [o["job_id"] for o in info["left_out"]] == ["j2", "j4"]


def test_yolo_polygon_joins_parts_and_holes_into_one_outline_that_covers_the_mask():
    ring, parts, pixel, _ = _masks(0)
    for mask in (ring, parts, pixel):
        polygon = np.array(yolo_polygon(mask)).reshape(-1, 2)
        assert len(polygon) >= 4
        drawn = np.zeros(mask.shape, np.uint8)
        cv2.fillPoly(drawn, [polygon.astype(np.int32)], 1)
        covered = (drawn.astype(bool) & mask).sum() / mask.sum()
        assert covered >= 0.97, covered  # the outline (simplified within 1 px) holds the mask
    assert yolo_polygon(pixel) == [63, 47, 64, 47, 64, 48, 63, 48]
    points = np.array(yolo_polygon(ring)).reshape(-1, 2)
    around_hole = [(x, y) for x, y in points.tolist() if 11 <= x <= 25 and 9 <= y <= 20]
    assert len(around_hole) >= 4  # the hole's own outline is walked too, not just the outer one
    both = np.array(yolo_polygon(parts)).reshape(-1, 2)
    assert (both[:, 0] >= 50).any() and (both[:, 0] <= 8).any()  # both parts in one polygon


@pytest.mark.parametrize("name,stem", [("photos/cat.jpg", "cat"), ("..\\..\\x.png", "x"), (".hidden", "hidden"),
                                       ("a.b.c", "a.b"), ("/", "jid")])
def test_label_file_stems_are_safe(name, stem):
    assert export._stem(name, "jid", set()) == stem
    assert export._stem(name, "jid", {stem}) == f"{stem}_jid"


def test_the_client_merges_chunks_renumbering_ids_and_remapping_classes(tmp_path):
    entries, _ = _entries()
    first = json.loads(b"".join(export.coco({"id": "b1", "total": 3}, iter(entries[:3]))))
    second = json.loads(b"".join(export.coco({"id": "b2", "total": 2}, iter(entries[2:]))))
    merged = merge_coco([first, second])
    path = tmp_path / "m.json"
    path.write_text(json.dumps(merged))
    coco = COCO(str(path))
    assert len(coco.imgs) == 4 and len(coco.anns) == 8 and [c["name"] for c in merged["categories"]] == [
        "car", "object", "tree"]
    assert merged["info"]["batch_ids"] == ["b1", "b2"]
    zips = [b"".join(export.yolo({"id": "b1", "total": 1}, iter([entries[2]]))),  # object, tree
            b"".join(export.yolo({"id": "b2", "total": 1}, iter([entries[0]])))]  # car, object
    write_yolo(tmp_path / "yolo", zips)
    assert _yaml_names((tmp_path / "yolo" / "data.yaml").read_text()) == {0: "object", 1: "tree", 2: "car"}
    classes = [line.split()[0] for line in (tmp_path / "yolo" / "labels" / "cat.txt").read_text().splitlines()]
    assert classes == ["2", "0", "2", "0"]
    assert sorted(p.name for p in (tmp_path / "yolo" / "labels").iterdir()) == ["cat.txt", "j3.txt"]
