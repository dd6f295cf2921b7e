"""Dataset exports of a finished batch: a COCO instances file, or a YOLO-seg zip (GET /v1/batches/<id>/export).

Every job keeps `results/<id>/masks.json` (worker/export.kept_masks) whatever outputs it asked: per object its
label, score, COCO RLE, area, bbox and a YOLO-seg polygon, all computed by the worker. So an export decodes no
mask and needs neither numpy nor OpenCV here: it is JSON and zip assembly, streamed.

Big batches: the answer is streamed as it is built, one job at a time in submission order; the stored masks are
read a few at a time ahead (READ_AHEAD, on a small pool), so memory holds those few documents, the image list and
the categories, never the whole dataset. In COCO the `annotations` come first and `images`, `categories` and
`info` after them (JSON objects have no order; every reader takes them so), and in the zip `data.yaml` (its
`names` are known once every label has been seen) is the last entry. Timings and memory for 1,000 jobs:
bench/export.py, bench/RESULTS.md.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

FORMATS = ("coco", "yolo")
PAGE = 200  # job records read from Redis per round trip
READ_AHEAD = 8  # masks documents being read from storage at once
_READERS = ThreadPoolExecutor(max_workers=READ_AHEAD, thread_name_prefix="samq-export")


@dataclass
class Entry:
    """One job of the batch as the export sees it: its record's fields and its kept masks (None if not read)."""

    job_id: str
    status: str  # a JobStatus value, or "expired" (the record is gone)
    metadata: dict[str, Any] | None = None
    error_code: str | None = None
    masks: dict[str, Any] | None = None  # masks.json: width, height, objects


def file_name(entry: Entry) -> str:
    """The image's file name: the item's metadata.file_name when given (as a string), else <job_id>.jpg."""
    name = (entry.metadata or {}).get("file_name")
    return name if isinstance(name, str) and name.strip() else f"{entry.job_id}.jpg"


def _stem(name: str, job_id: str, used: set[str]) -> str:
    """A safe, unique label file stem: the file name's last part without its suffix (no folders, no dots first)."""
    base = PurePosixPath(name.replace("\\", "/")).name
    stem = re.sub(r"[\x00-\x1f/]", "_", base.rsplit(".", 1)[0] if "." in base[1:] else base).lstrip(".")
    stem = stem or job_id
    if stem in used:
        stem = f"{stem}_{job_id}"
    used.add(stem)
    return stem


class _Categories:
    """Labels in order of first appearance: COCO category ids from 1, YOLO class ids from 0."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def id(self, label: str) -> int:
        return self.ids.setdefault(label, len(self.ids) + 1)

    def coco(self) -> list[dict[str, Any]]:
        return [{"id": i, "name": name, "supercategory": "object"} for name, i in self.ids.items()]


def _left_out(entry: Entry) -> dict[str, Any] | None:
    """Why a job is not in the dataset (None when it is)."""
    if entry.status != "succeeded":
        out = {"job_id": entry.job_id, "status": entry.status}
        if entry.error_code:
            out["error"] = entry.error_code
        return out
    if entry.masks is None:
        return {"job_id": entry.job_id, "status": entry.status, "error": "masks_not_kept"}
    return None


def _info(batch: dict[str, Any], images: int, left_out: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
    return {"description": f"samq batch {batch['id']}", "batch_id": batch["id"],
            "date_created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "jobs": batch["total"], "images": images, **more,
            "left_out": left_out}  # failed, canceled or expired jobs (and any whose masks are gone)


def coco(batch: dict[str, Any], entries: Iterable[Entry]) -> Iterator[bytes]:
    """The COCO instances file, in pieces: annotations as they are read, then images, categories and info."""
    cats = _Categories()
    images: list[dict[str, Any]] = []
    left_out: list[dict[str, Any]] = []
    n_ann = 0
    yield b'{"annotations":['
    for entry in entries:
        why = _left_out(entry)
        if why is not None:
            left_out.append(why)
            continue
        image_id = len(images) + 1
        masks = entry.masks
        assert masks is not None  # _left_out left out the jobs without masks
        images.append({"id": image_id, "file_name": file_name(entry), "width": masks["width"],
                       "height": masks["height"], "job_id": entry.job_id})
        pieces = []
        for obj in masks["objects"]:
            n_ann += 1
            ann = {"id": n_ann, "image_id": image_id, "category_id": cats.id(obj["label"]),
                   "segmentation": obj["rle"], "area": obj["area"], "bbox": obj["bbox"], "iscrowd": 0,
                   "score": obj["score"]}
            if "stability_score" in obj:
                ann["stability_score"] = obj["stability_score"]
            pieces.append(json.dumps(ann, separators=(",", ":")))
        if pieces:
            yield ((b"," if n_ann > len(pieces) else b"") + ",".join(pieces).encode())
    tail = {"images": images, "categories": cats.coco(), "info": _info(batch, len(images), left_out, annotations=n_ann)}
    yield b"]," + json.dumps(tail, separators=(",", ":"))[1:].encode()


def yolo_lines(masks: dict[str, Any], class_id: Callable[[str], int]) -> str:
    """One YOLO-seg label file: `class x1 y1 x2 y2 ...` per object, coordinates normalised to 0-1."""
    width, height = masks["width"], masks["height"]
    lines = []
    for obj in masks["objects"]:
        polygon = obj.get("polygon") or []
        if len(polygon) < 6:
            continue  # an empty mask has no outline
        coords = " ".join(f"{min(max(v / (width if i % 2 == 0 else height), 0.0), 1.0):.6f}"
                          for i, v in enumerate(polygon))
        lines.append(f"{class_id(obj['label'])} {coords}")
    return "".join(line + "\n" for line in lines)


class _Sink:
    """A write-only file for zipfile (it writes unseekable streams with data descriptors): hands out the bytes."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:  # zipfile never closes a file it was given; typeshed's writable file has close()
        pass

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def yolo(batch: dict[str, Any], entries: Iterable[Entry]) -> Iterator[bytes]:
    """The YOLO-seg zip, in pieces: labels/<stem>.txt per image (empty when it has no object), then data.yaml
    (names, class ids from 0 in the COCO categories' order) and info.json (the images, and the jobs left out)."""
    cats, sink = _Categories(), _Sink()
    used: set[str] = set()
    left_out: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for entry in entries:
            why = _left_out(entry)
            if why is not None:
                left_out.append(why)
                continue
            masks = entry.masks
            assert masks is not None  # _left_out left out the jobs without masks
            name = file_name(entry)
            stem = _stem(name, entry.job_id, used)
            zf.writestr(f"labels/{stem}.txt", yolo_lines(masks, lambda label: cats.id(label) - 1))
            images.append({"file_name": name, "label_file": f"labels/{stem}.txt", "job_id": entry.job_id,
                           "width": masks["width"], "height": masks["height"]})
            yield sink.take()
        names = "".join(f"  {i - 1}: {json.dumps(label)}\n" for label, i in cats.ids.items())  # JSON strings: YAML
        zf.writestr("data.yaml", f"# samq batch {batch['id']}: YOLO-seg labels (the images are yours: put them in "
                                 f"images/ beside labels/)\npath: .\ntrain: images\nval: images\n"
                                 f"nc: {len(cats.ids)}\n" + ("names:\n" + names if names else "names: {}\n"))
        info = _info(batch, len(images), left_out, files=images)
        zf.writestr("info.json", json.dumps(info, indent=1))
    yield sink.take()


def entries(records: Callable[[list[str]], list[dict[str, Any] | None]], job_ids: Callable[[int, int], list[str]],
            read_masks: Callable[[str], dict[str, Any] | None]) -> Iterator[Entry]:
    """The batch's jobs in order: records a page at a time, masks read READ_AHEAD ahead on a small pool.

    `records(ids)`: each job's record (None if gone); `job_ids(start, count)`: a page of the batch's ids;
    `read_masks(job_id)`: the job's masks.json parsed, or None when it is not there.
    """
    window: list[tuple[Entry, Any]] = []
    start = 0
    while True:
        ids = job_ids(start, PAGE)
        if not ids:
            break
        start += len(ids)
        for job_id, record in zip(ids, records(ids), strict=True):
            if record is None:
                entry = Entry(job_id, "expired")
            else:
                entry = Entry(job_id, record.get("status", "expired"), record.get("metadata"),
                              record.get("error_code"))
            future = _READERS.submit(read_masks, job_id) if entry.status == "succeeded" else None
            window.append((entry, future))
            while len(window) > READ_AHEAD:
                yield _done(*window.pop(0))
    for item in window:
        yield _done(*item)


def _done(entry: Entry, future: Any) -> Entry:
    if future is not None:
        entry.masks = future.result()
    return entry
