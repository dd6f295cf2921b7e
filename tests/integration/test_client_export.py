"""samq-client's labeling commands against the running stack: `segment --everything`, and `batch --export coco`
/ `--export yolo` over a folder of real photos sent in several chunks (the exports merged into one dataset)."""

from __future__ import annotations

import json
import shutil

from PIL import Image
from pycocotools.coco import COCO

from harness.photos import ASTRONAUT_PNG, CHELSEA_PNG, ROCKET_JPG
from tests.integration.test_client import cli

SMALL = json.dumps({"points_per_side": 4, "pred_iou_thresh": 0, "stability_score_thresh": 0, "multimask": False})


def _photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in (ROCKET_JPG, ASTRONAUT_PNG, CHELSEA_PNG):
        shutil.copy(photo, folder / photo.name)
    return folder


def test_cli_segment_everything_writes_the_label_image(stack, tmp_path):
    key = stack.new_key(10)
    out = tmp_path / "masks.png"
    run = cli(stack, key, "segment", str(CHELSEA_PNG), "--everything-options", SMALL, "-o", str(out))
    assert run.returncode == 0, run.stderr
    image = Image.open(out)
    assert image.format == "PNG" and image.size == (451, 300) and image.getextrema()[1] >= 1  # mask_png from .png
    assert stack.balance(key) == 6  # SAMQ_COST_EVERYTHING
    bad = cli(stack, key, "segment", str(CHELSEA_PNG), "--everything", "--prompt", "cat")
    assert bad.returncode == 2 and "--everything" in bad.stderr


def test_cli_batch_export_coco_then_yolo_on_the_same_run(stack, tmp_path):
    key = stack.new_key(10)
    folder, out = _photos(tmp_path), tmp_path / "out"
    run = cli(stack, key, "batch", str(folder), "--prompt", "rocket", "--export", "coco", "-o", str(out),
              "--chunk-size", "2", "--outputs", "json")
    assert run.returncode == 0, run.stderr + run.stdout
    coco = COCO(str(out / "annotations.json"))
    images = sorted((i["file_name"], i["width"], i["height"]) for i in coco.dataset["images"])
    assert images == [("astronaut.png", 512, 512), ("chelsea.png", 451, 300), ("rocket.jpg", 640, 427)]
    assert len(coco.dataset["info"]["batch_ids"]) == 2  # two chunks, one dataset
    assert sorted(i["id"] for i in coco.dataset["images"]) == [1, 2, 3]
    assert all(coco.cats[a["category_id"]]["name"] == "rocket" for a in coco.dataset["annotations"])
    # The same command with --export yolo: the run is done (nothing sent or paid again), only the export is new.
    again = cli(stack, key, "batch", str(folder), "--prompt", "rocket", "--export", "yolo", "-o", str(out),
                "--chunk-size", "2", "--outputs", "json")
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in (out / "yolo" / "labels").iterdir()) == ["astronaut.txt", "chelsea.txt", "rocket.txt"]
    assert "names:" in (out / "yolo" / "data.yaml").read_text()
    assert stack.balance(key) == 7


def test_cli_batch_everything_exports_yolo_labels_for_every_object(stack, tmp_path):
    key = stack.new_key(20)
    folder, out = _photos(tmp_path), tmp_path / "out"
    run = cli(stack, key, "batch", str(folder), "--everything-options", SMALL, "--export", "yolo", "-o", str(out),
              "--outputs", "json")
    assert run.returncode == 0, run.stderr + run.stdout
    data = (out / "yolo" / "data.yaml").read_text()
    assert 'names:\n  0: "object"\n' in data
    for name in ("astronaut", "chelsea", "rocket"):
        objects = json.loads((out / f"{name}.json").read_text())["objects"]
        lines = (out / "yolo" / "labels" / f"{name}.txt").read_text().splitlines()
        assert len(lines) == len(objects) >= 1
        for line in lines:
            cls, *coords = line.split()
            assert cls == "0" and len(coords) >= 6 and all(0 <= float(v) <= 1 for v in coords)
    assert stack.balance(key) == 20 - 3 * 4
