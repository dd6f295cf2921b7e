"""A folder of images through `POST /v1/batches`, resumable: a state file in the output folder remembers what
was submitted and downloaded, and every chunk's Idempotency-Key is derived from its content, so a rerun after
Ctrl-C (even one that struck between sending a chunk and saving the state) never submits or pays twice."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from samq_client.client import Client
from samq_client.errors import QueueFull, SamqError, TooManyJobs
from samq_client.records import OUTPUT_SUFFIX

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
STATE_FILE = ".samq-batch.json"
MAX_CHUNK_BYTES = 16 * 1024 * 1024
DEFAULT_OUTPUTS = ("overlay_jpeg", "json")  # the API's default for a prompt: the drop-in picture and the objects
ENDED = ("succeeded", "failed", "canceled", "expired")
STATUS_READS_PER_S = 5


@dataclass
class Chunk:
    """Images sent together as one batch."""

    key: str  # the Idempotency-Key: a digest of the settings and every file's name and bytes
    files: list[str]
    batch_id: str | None = None
    job_ids: list[str] = field(default_factory=list)


@dataclass
class State:
    """What a run has done so far; saved atomically after every step."""

    settings: dict[str, Any]
    chunks: list[Chunk] = field(default_factory=list)
    finished: dict[str, str] = field(default_factory=dict)  # file -> succeeded | failed | canceled
    errors: dict[str, dict[str, str]] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)  # files that are no image: never sent

    @classmethod
    def load(cls, path: Path) -> State | None:
        """The state saved in `path`, if any."""
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(**{**data, "chunks": [Chunk(**c) for c in data["chunks"]]})

    @property
    def files(self) -> list[str]:
        """Every image of the run: those sent and those rejected."""
        return [name for chunk in self.chunks for name in chunk.files] + self.rejected

    def save(self, path: Path) -> None:
        """Write to a temporary file and rename it: an interrupt never leaves half a state file."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, path)


def list_images(folder: Path) -> list[str]:
    """The image files directly in `folder`, sorted."""
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def is_image(path: Path) -> bool:
    """Whether a file starts like a JPEG, PNG or WebP (a batch with one bad item is refused whole)."""
    with path.open("rb") as fh:
        head = fh.read(12)
    return head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")) or (head[:4] == b"RIFF" and head[8:] == b"WEBP")


def chunk_key(settings: dict[str, Any], folder: Path, files: list[str]) -> str:
    """A deterministic Idempotency-Key for one chunk: same settings and same files give the same key."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name in files:
        digest.update(name.encode() + b"\0" + hashlib.sha256((folder / name).read_bytes()).digest())
    return "samq-client-" + digest.hexdigest()[:40]


def output_path(outdir: Path, image_name: str, output: str) -> Path:
    """Where one output of one image goes: next to the image's name (cat.jpg -> cat.overlay.jpg)."""
    return outdir / (Path(image_name).stem + OUTPUT_SUFFIX.get(output, f".{output}"))


@dataclass
class Progress:
    """What the run has to show: images finished, failed, and the total."""

    total: int
    finished: int
    failed: int


class Wakeup:
    """Wakes the poll loop early. Listening, it is a local HTTP endpoint for the API's webhooks: a delivery only
    wakes the loop, which then reads the batch back from the API. The body is never trusted, so no secret is
    needed and a stray request costs one status read."""

    def __init__(self, listen: tuple[str, int] | None = None) -> None:
        self.event = threading.Event()
        self.server: ThreadingHTTPServer | None = None
        if listen is not None:
            event = self.event

            class Handler(BaseHTTPRequestHandler):
                def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                    self.rfile.read(int(self.headers.get("content-length") or 0))
                    self.send_response(204)
                    self.end_headers()
                    event.set()

                def log_message(self, *args: object) -> None:
                    pass

            self.server = ThreadingHTTPServer(listen, Handler)
            threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    @property
    def url(self) -> str | None:
        """Where the API should send webhooks (None when not listening)."""
        if self.server is None:
            return None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def wait(self, timeout_s: float) -> bool:
        """Sleep until woken or `timeout_s` passed; True when woken."""
        woken = self.event.wait(timeout_s)
        self.event.clear()
        return woken

    def close(self) -> None:
        """Stop listening."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class BatchRun:
    """Submit a folder in chunks, poll, download each result next to its name."""

    def __init__(self, client: Client, folder: Path, outdir: Path, settings: dict[str, Any],
                 chunk_size: int = 100, poll_s: float = 1.0, webhook_url: str | None = None,
                 wakeup: Wakeup | None = None) -> None:
        self.client, self.folder, self.outdir = client, folder, outdir
        # prompt, outputs, priority: part of every chunk's key
        self.settings = {**settings, "outputs": list(settings.get("outputs") or DEFAULT_OUTPUTS)}
        self.chunk_size, self.poll_s = chunk_size, poll_s
        self.wakeup = wakeup or Wakeup()
        self.webhook_url = webhook_url or self.wakeup.url
        self.state_path = outdir / STATE_FILE
        self.outdir.mkdir(parents=True, exist_ok=True)
        state = State.load(self.state_path)
        if state is not None and state.settings != self.settings:
            raise SamqError(f"{self.state_path} belongs to a run with other settings ({state.settings}); "
                            "use another output folder", code="state_mismatch")
        self.resumed = state is not None
        self.state = state or State(self.settings)

    def plan(self) -> None:
        """Put every image not yet in a chunk into new chunks (a rerun keeps the chunks it already made).

        A chunk holds at most `chunk_size` images and, base64 included, about MAX_CHUNK_BYTES: a batch body
        carries its images, and the server refuses bodies over its limit (about 27 MiB by default)."""
        planned = set(self.state.files)
        files: list[str] = []
        size = 0
        for name in list_images(self.folder):
            if name in planned:
                continue
            if not is_image(self.folder / name):
                self.state.rejected.append(name)
                self.state.finished[name] = "failed"
                self.state.errors[name] = {"code": "undecodable_image", "message": "not a JPEG, PNG or WebP file"}
                continue
            encoded = (self.folder / name).stat().st_size * 4 // 3
            if files and (len(files) == self.chunk_size or size + encoded > MAX_CHUNK_BYTES):
                self._add_chunk(files)
                files, size = [], 0
            files.append(name)
            size += encoded
        if files:
            self._add_chunk(files)
        self.state.save(self.state_path)

    def _add_chunk(self, files: list[str]) -> None:
        self.state.chunks.append(Chunk(chunk_key(self.settings, self.folder, files), files))

    @property
    def progress(self) -> Progress:
        """Counts for the progress bar."""
        total = len(self.state.files)
        failed = sum(1 for s in self.state.finished.values() if s != "succeeded")
        return Progress(total, len(self.state.finished), failed)

    def run(self, on_chunk: Callable[[Chunk], None] | None = None,
            on_progress: Callable[[Progress], None] | None = None) -> None:
        """Submit and collect until every image finished. Back-pressure (429 too_many_jobs, 503 queue_full, once
        the client's own retries are spent) pauses submitting while finished results are collected."""
        while True:
            self.submit(on_chunk)
            unsent = any(not c.batch_id for c in self.state.chunks)
            open_chunks = [c for c in self.state.chunks
                           if c.batch_id and any(f not in self.state.finished for f in c.files)]
            if not open_chunks and not unsent:
                return
            for chunk in open_chunks:
                self._collect(chunk)
                if on_progress:
                    on_progress(self.progress)
            if unsent or any(f not in self.state.finished for c in open_chunks for f in c.files):
                # Every call counts against the key's rate limit: many open chunks means reading them less often.
                self.wakeup.wait(max(self.poll_s, len(open_chunks) / STATUS_READS_PER_S))

    def submit(self, on_chunk: Callable[[Chunk], None] | None = None) -> None:
        """Send the chunks not yet acknowledged (a replayed key answers with the first batch, charged once), until
        done or the server pushes back."""
        for chunk in self.state.chunks:
            if chunk.batch_id:
                continue
            items = [{"image": self.folder / name, **self._fields(), "metadata": {"file": name, "file_name": name}}
                     for name in chunk.files]  # file_name: the image's name in dataset exports
            try:
                batch = self.client.submit_batch(items, webhook_url=self.webhook_url,
                                                 priority=self.settings.get("priority"), idempotency_key=chunk.key)
            except (TooManyJobs, QueueFull):
                return  # nothing was charged; the same key is sent again later
            chunk.batch_id, chunk.job_ids = batch.id, list(batch.job_ids)
            self.state.save(self.state_path)
            if on_chunk:
                on_chunk(chunk)

    def _fields(self) -> dict[str, Any]:
        if self.settings.get("everything") is not None:
            return {"everything": self.settings["everything"], "outputs": self.settings["outputs"]}
        return {"prompt": self.settings.get("prompt"), "outputs": self.settings["outputs"]}

    def _collect(self, chunk: Chunk) -> None:
        """Download what finished in one chunk; the state is saved once per chunk (an interrupt in between only
        means a few downloads are done again)."""
        statuses = {ref.id: ref.status for ref in self.client.batch_status(chunk.batch_id).jobs}
        finished = len(self.state.finished)
        for name, job_id in zip(chunk.files, chunk.job_ids, strict=True):
            status = statuses.get(job_id)
            if name in self.state.finished or status not in ENDED:
                continue
            if status == "succeeded":  # the outputs are known (always sent explicitly): no need to read the job
                for output in self.settings["outputs"]:
                    output_path(self.outdir, name, output).write_bytes(self.client.result(job_id, output))
            else:
                error = self.client.get(job_id).error if status != "expired" else None
                self.state.errors[name] = error or {"code": status, "message": f"the job was {status}"}
                status = "canceled" if status == "canceled" else "failed"
            self.state.finished[name] = status
        if len(self.state.finished) != finished:
            self.state.save(self.state_path)

    def summary(self) -> dict[str, int]:
        """Images by final status (and those not finished)."""
        counts = {"succeeded": 0, "failed": 0, "canceled": 0, "unfinished": 0}
        for name in self.state.files:
            counts[self.state.finished.get(name, "unfinished")] += 1
        return counts


def export(client: Client, run: BatchRun, fmt: str) -> Path:
    """The run's dataset from every chunk's batch export, merged: `coco` writes <out>/annotations.json (image and
    annotation ids renumbered, categories merged by name), `yolo` writes <out>/yolo/ (labels/, data.yaml with the
    merged names, class ids remapped, info.json)."""
    batch_ids = [c.batch_id for c in run.state.chunks if c.batch_id]
    if fmt == "coco":
        merged = merge_coco([client.export(b, "coco") for b in batch_ids])
        path = run.outdir / "annotations.json"
        path.write_text(json.dumps(merged))
        return path
    root = run.outdir / "yolo"
    write_yolo(root, [client.export(b, "yolo") for b in batch_ids])
    return root


def merge_coco(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Several COCO instances files as one: ids renumbered from 1, categories by name in order of first use."""
    out: dict[str, Any] = {"images": [], "annotations": [], "categories": [],
                           "info": {"description": "samq batches", "batch_ids": [], "left_out": []}}
    cats: dict[str, int] = {}
    for part in parts:
        image_ids, cat_ids = {}, {}
        for cat in part["categories"]:
            cat_ids[cat["id"]] = cats.setdefault(cat["name"], len(cats) + 1)
        for image in part["images"]:
            image_ids[image["id"]] = len(out["images"]) + 1
            out["images"].append({**image, "id": image_ids[image["id"]]})
        for ann in part["annotations"]:
            out["annotations"].append({**ann, "id": len(out["annotations"]) + 1,
                                       "image_id": image_ids[ann["image_id"]],
                                       "category_id": cat_ids[ann["category_id"]]})
        info = part.get("info", {})
        out["info"]["batch_ids"].append(info.get("batch_id"))
        out["info"]["left_out"] += info.get("left_out", [])
    out["categories"] = [{"id": i, "name": name, "supercategory": "object"} for name, i in cats.items()]
    return out


def write_yolo(root: Path, zips: list[bytes]) -> None:
    """Unpack several YOLO-seg zips into one folder: class ids remapped to the merged names."""
    import io
    import zipfile

    labels = root / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    names: dict[str, int] = {}
    info: dict[str, Any] = {"batch_ids": [], "files": [], "left_out": []}
    for data in zips:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            part = json.loads(zf.read("info.json"))
            local = _yaml_names(zf.read("data.yaml").decode())
            remap = {i: names.setdefault(name, len(names)) for i, name in local.items()}
            for entry in part["files"]:
                text = zf.read(entry["label_file"]).decode()
                lines = []
                for line in text.splitlines():
                    cls, _, rest = line.partition(" ")
                    lines.append(f"{remap[int(cls)]} {rest}")
                target = labels / Path(entry["label_file"]).name
                if any(f["label_file"] == f"labels/{target.name}" for f in info["files"]):
                    target = labels / f"{target.stem}_{entry['job_id']}.txt"  # the same stem in another chunk
                target.write_text("".join(line + "\n" for line in lines))
                info["files"].append({**entry, "label_file": f"labels/{target.name}"})
            info["batch_ids"].append(part.get("batch_id"))
            info["left_out"] += part.get("left_out", [])
    listed = "".join(f"  {i}: {json.dumps(name)}\n" for name, i in names.items())
    (root / "data.yaml").write_text("# samq batches: YOLO-seg labels (put the images in images/ beside labels/)\n"
                                    f"path: .\ntrain: images\nval: images\nnc: {len(names)}\n"
                                    + ("names:\n" + listed if listed else "names: {}\n"))
    (root / "info.json").write_text(json.dumps(info, indent=1))


def _yaml_names(text: str) -> dict[int, str]:
    """The `names` of a data.yaml as the server writes it (one `  <id>: "<name>"` line each, JSON-quoted)."""
    names, inside = {}, False
    for line in text.splitlines():
        if line.startswith("names:"):
            inside = True
            continue
        if inside and line.startswith("  ") and ":" in line:
            key, _, value = line.strip().partition(": ")
            names[int(key)] = json.loads(value)
        elif inside:
            break
    return names
