"""GPU throughput: the service pipeline vs a Grounded-SAM-2-style loop, SAM 2.1-L + Grounding DINO-T, random weights.

Run on a GPU machine (under 8 minutes on one GPU; no weights are downloaded):
    python bench/gpu.py                       # table on stdout, JSON in bench/results/gpu.json
    python bench/gpu.py --smoke               # tiny models and sizes on CPU (seconds): catches typos
Modes, each on distinct images (the embedding cache never hits):
  baseline   the Grounded-SAM-2 demo's way: fp32, eager, one image at a time, full decode, official APIs
  fp32       the service's pipeline (decode, segment, render the overlay JPEG), fp32 eager, one image at a time
  bf16       the same under bf16 autocast
  bf16+compile   the same with the image encoder compiled (the service's SAMQ_COMPILE)
  bf16+compile xB   B images encoded in one set_image_batch call, then each job's prompts and rendering
  worker bf16 / worker bf16+compile   the real service: a gateway (gunicorn) and one GPU worker (Celery threads
      pool + its device thread, SAMQ_ENCODER_BATCH auto) on Redis and local storage; the jobs are queued through
      the API while the worker is paused, then drained. Jobs/s and the device-busy fraction come from the jobs'
      own records (model stages summed over jobs / first start to last finish), as bench/pipelined.py W2.
for two workloads: points-only (two clicks) and text (Grounding DINO boxes -> SAM 2), on 1920x1080 photos.
`--redis-url` (default: a redis-server started for the run on a free port when none is given).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/gpu.py` imports this checkout
sys.path.insert(1, str(Path(__file__).resolve().parent))  # and bench/common.py, however it is loaded

from sam2.sam2_image_predictor import SAM2ImagePredictor  # noqa: E402

from shared.images import load_rgb  # noqa: E402
from shared.records import Params  # noqa: E402
from shared.schemas import JobRequest, parse_body  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.weights import get_preset  # noqa: E402
from worker import pipeline  # noqa: E402
from worker.embedding import Embedder, EmbeddingCache  # noqa: E402
from worker.models.registry import DTYPES, Models, ensure_random_weights, load_models, precision  # noqa: E402

PROMPT = "person . rocket ."
MAX_BYTES, MAX_PIXELS = 64 << 20, 100_000_000


@dataclass(frozen=True)
class Config:
    """Sizes of one run."""

    preset: str
    detector: str
    device: str
    size: tuple[int, int]  # width, height of the test images
    n: int  # timed images per mode
    warmup: int
    batch: int
    compile_backend: str
    budget_s: float


FULL = Config("random-large", "tiny", "cuda", (1920, 1080), 64, 3, 8, "inductor", 420.0)
SMOKE = Config("tiny-random", "tiny", "cpu", (160, 120), 1, 0, 2, "eager", 600.0)


def photos(cfg: Config, count: int) -> list[bytes]:
    """Distinct JPEGs at the configured size: real photos, shifted and tinted so no two images hash alike."""
    from harness.photos import ASTRONAUT_PNG, CHELSEA_PNG, ROCKET_JPG

    sources = [np.asarray(Image.open(p).convert("RGB").resize(cfg.size)) for p in (ROCKET_JPG, ASTRONAUT_PNG,
                                                                                    CHELSEA_PNG)]
    out = []
    for i in range(count):
        pixels = np.roll(sources[i % 3], i, axis=1).astype(np.int16) + (i // 3) % 7
        buf = io.BytesIO()
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def job_params(cfg: Config, text: bool) -> Params:
    """What the gateway would hand the worker: two clicks, or a text prompt with up to 4 objects."""
    w, h = cfg.size
    body = {"image": "x", "prompt": PROMPT, "max_objects": 4, "box_threshold": 0.0, "text_threshold": 0.0} if text \
        else {"image": "x", "coordinates": [[w // 2, h // 2], [w // 3, h // 3]]}
    return parse_body(JobRequest, {**body, "outputs": ["overlay_jpeg"]}).params()


def load(cfg: Config, model_dir: Path) -> Models:
    """The service's models through its own loader (loaded once; precision and compile are set per mode)."""
    return load_models(Settings(models=cfg.preset, detector=cfg.detector, model_dir=model_dir, device=cfg.device,
                                dtype="fp32", embed_cache_mb=4096))


_COMPILED: dict[torch.nn.Module, torch.nn.Module] = {}


@contextmanager
def mode(cfg: Config, models: Models, dtype: str, compiled: bool) -> Iterator[None]:
    """Run under this precision (autocast, as SAMQ_DTYPE does), the image encoder compiled when asked."""
    encoder = models.sam.model.image_encoder
    models.embedder.precision = models.dino.precision = precision(cfg.device, DTYPES[dtype])
    if compiled:  # as SAMQ_COMPILE does; compiled once per run, so later modes reuse the compiled graphs
        if encoder not in _COMPILED:
            kwargs = {"mode": "max-autotune", "dynamic": False} if cfg.compile_backend == "inductor" else {}
            _COMPILED[encoder] = torch.compile(encoder, backend=cfg.compile_backend, **kwargs)
        models.sam.model.image_encoder = _COMPILED[encoder]
    try:
        yield
    finally:
        models.sam.model.image_encoder = encoder


def baseline_loop(models: Models, params: Params, limits: pipeline.Thresholds) -> Callable[[list[bytes]], None]:
    """One image at a time, as the Grounded-SAM-2 demo writes it: official APIs, fp32, no cache, full decode."""
    predictor = SAM2ImagePredictor(models.sam.model)  # a fresh predictor: no embedding cache in the way
    dino = models.dino

    def run(batch: list[bytes]) -> None:
        for data in batch:
            image = Image.open(io.BytesIO(data)).convert("RGB")
            pixels = np.array(image)
            predictor.set_image(pixels)
            if params.prompt:
                inputs = dino.processor(images=image, text=PROMPT, return_tensors="pt").to(dino.device)
                with torch.no_grad():
                    outputs = dino.model(**inputs)
                found = dino.processor.post_process_grounded_object_detection(
                    outputs, input_ids=inputs["input_ids"], threshold=limits.box, text_threshold=limits.text,
                    target_sizes=[image.size[::-1]])[0]
                boxes = found["boxes"][: limits.max_objects].cpu().numpy()
                if not len(boxes):
                    continue
                masks, _, _ = predictor.predict(box=boxes, multimask_output=False)
            else:
                masks, _, _ = predictor.predict(point_coords=np.array(params.points, dtype=np.float32),
                                                point_labels=np.array(params.labels), multimask_output=False)
            mask = masks.reshape(-1, *masks.shape[-2:]).any(axis=0)
            pixels[mask] = pixels[mask] // 2 + np.array([15, 72, 127], dtype=np.uint8)
            Image.fromarray(pixels).save(io.BytesIO(), "JPEG", quality=90)

    return run


def service_loop(models: Models, params: Params, limits: pipeline.Thresholds, batch_size: int
                 ) -> Callable[[list[bytes]], None]:
    """The worker's pipeline: decode once, (batch-)encode, segment, render the overlay JPEG."""
    embedder = Embedder(models.sam, EmbeddingCache(4 << 30), models.embedder.precision)  # a fresh cache per mode

    def run(batch: list[bytes]) -> None:
        images = [load_rgb(data, MAX_BYTES, MAX_PIXELS) for data in batch]
        if batch_size > 1:
            embedder.prefill([np.asarray(i) for i in images])
        for image in images:
            pipeline.run(embedder, models.dino, image, params, limits)

    return run


def worker_run(cfg: Config, model_dir: Path, redis_url: str, workload: str, compiled: bool) -> dict:
    """The real worker draining queued jobs: jobs/s and device-busy fraction from the job records."""
    import base64

    from common import bench_stack, wait_jobs, worker_figures

    env = {"SAMQ_MODELS": cfg.preset, "SAMQ_DETECTOR": cfg.detector, "SAMQ_MODEL_DIR": str(model_dir),
           "SAMQ_DEVICE": cfg.device, "SAMQ_DTYPE": "bf16", "SAMQ_COMPILE": "true" if compiled else "false",
           "SAMQ_MAX_IMAGE_BYTES": str(MAX_BYTES), "SAMQ_MAX_IMAGE_PIXELS": str(MAX_PIXELS)}
    params = job_params(cfg, workload == "text")
    w, h = cfg.size
    body = {"prompt": PROMPT, "max_objects": 4, "box_threshold": 0.0, "text_threshold": 0.0} if params.prompt \
        else {"coordinates": [[w // 2, h // 2], [w // 3, h // 3]]}
    with bench_stack(redis_url, 5, {"wgpu": {}}, **env) as stack:
        key = stack.new_key(10**6)

        def submit(images: list[bytes]) -> list[str]:
            ids = []
            for data in images:
                r = stack.post("/v1/jobs", {**body, "image": base64.b64encode(data).decode(),
                                            "outputs": ["overlay_jpeg"]}, key)
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
            return ids

        images = photos(cfg, cfg.warmup + cfg.n)
        if cfg.warmup:
            wait_jobs(stack, key, submit(images[: cfg.warmup]))  # models warm, the encoder compiled
        with stack.paused("wgpu"):  # the whole queue is there before the worker takes the first job
            ids = submit(images[cfg.warmup:])
        figures = worker_figures(wait_jobs(stack, key, ids))
    return {"images": figures["jobs"], "images_per_s": figures["jobs_per_s"], "busy": figures["busy"],
            "median_timings_ms": figures["median_timings_ms"]}


def sync(device: str) -> None:
    """Wait for queued GPU work (timings must include it)."""
    if device == "cuda":
        torch.cuda.synchronize()


def measure(cfg: Config, run: Callable[[list[bytes]], None], images: list[bytes], batch: int) -> dict:
    """Warm up, then time each chunk of `batch` images; a job's latency is its chunk's time."""
    start = time.perf_counter()
    for i in range(cfg.warmup):
        run(images[i * batch:(i + 1) * batch] or images[:batch])
    sync(cfg.device)
    warmup_s = time.perf_counter() - start
    timed = images[cfg.warmup * batch:]
    if cfg.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    latencies = []
    start = time.perf_counter()
    for i in range(0, len(timed), batch):
        t0 = time.perf_counter()
        run(timed[i:i + batch])
        sync(cfg.device)
        latencies += [time.perf_counter() - t0] * len(timed[i:i + batch])
    total = time.perf_counter() - start
    ordered = sorted(latencies)
    return {"images": len(timed), "images_per_s": round(len(timed) / total, 2),
            "p50_ms": round(1000 * statistics.median(ordered), 1),
            "p95_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
            "warmup_s": round(warmup_s, 1),
            "gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cfg.device == "cuda" else None}


MODES = (  # name, dtype, compiled, batched
    ("baseline", "fp32", False, False),
    ("fp32", "fp32", False, False),
    ("bf16", "bf16", False, False),
    ("bf16+compile", "bf16", True, False),
    ("bf16+compile xB", "bf16", True, True),
)


def main(argv: list[str] | None = None) -> dict:
    """Run every mode for both workloads within the time budget; print a table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models and images on CPU")
    parser.add_argument("--n", type=int, help="timed images per mode")
    parser.add_argument("--batch", type=int, help="images per batched call")
    parser.add_argument("--preset", help="SAM 2 preset (random-large: SAM 2.1-L at real size)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gpu.json")
    parser.add_argument("--redis-url", help="Redis server for the worker modes (default: start one)")
    args = parser.parse_args(argv)
    cfg = SMOKE if args.smoke else FULL
    cfg = replace(cfg, n=args.n or cfg.n, batch=args.batch or cfg.batch, preset=args.preset or cfg.preset)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --smoke on a CPU")
    began = time.perf_counter()
    rows, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="samq-gpu-") as tmp:
        model_dir = Path(tmp)
        ensure_random_weights(get_preset(cfg.preset, cfg.detector), Settings(model_dir=model_dir))
        models = load(cfg, model_dir)
        for workload in ("points", "text"):
            params = job_params(cfg, workload == "text")
            limits = pipeline.Thresholds(0.0, 0.0, 4)
            for name, dtype, compiled, batched in MODES:
                if args.smoke and workload == "text" and name in ("fp32", "bf16"):
                    continue  # the smoke run covers each code path once, not every combination
                if time.perf_counter() - began > cfg.budget_s:
                    skipped.append(f"{workload}/{name}")
                    continue
                batch = cfg.batch if batched else 1
                images = photos(cfg, (cfg.warmup + -(-cfg.n // batch)) * batch)
                with mode(cfg, models, dtype, compiled):
                    loop = baseline_loop(models, params, limits) if name == "baseline" else \
                        service_loop(models, params, limits, batch)
                    result = measure(cfg, loop, images, batch)
                rows.append({"workload": workload, "mode": name.replace("xB", f"x{cfg.batch}"), "batch": batch,
                             **result})
                if cfg.device == "cuda":
                    torch.cuda.empty_cache()
        del models  # the worker process loads its own copy
        if cfg.device == "cuda":
            torch.cuda.empty_cache()
        with redis_for(args.redis_url) as redis_url:
            for workload, compiled in (("points", False), ("text", False), ("points", True)):
                name = "worker bf16" + ("+compile" if compiled else "")
                if time.perf_counter() - began > cfg.budget_s + (0 if compiled else 60):
                    skipped.append(f"{workload}/{name}")
                    continue
                rows.append({"workload": workload, "mode": name, "batch": "auto",
                             **worker_run(cfg, model_dir, redis_url, workload, compiled)})
    for workload in ("points", "text"):
        base = next((r for r in rows if r["workload"] == workload and r["mode"] == "baseline"), None)
        for row in rows:
            if base and row["workload"] == workload:
                row["vs_baseline"] = round(row["images_per_s"] / base["images_per_s"], 2)
    device = torch.cuda.get_device_name() if cfg.device == "cuda" else "cpu"
    report = {"device": device, "preset": cfg.preset, "detector": cfg.detector, "image_size": list(cfg.size),
              "torch": torch.__version__, "seconds": round(time.perf_counter() - began, 1), "rows": rows,
              "skipped": skipped}
    print(f"{cfg.preset} + grounding-dino-{cfg.detector} on {device}, {cfg.size[0]}x{cfg.size[1]} images, "
          f"{report['seconds']} s")
    print(f"{'workload':<8} {'mode':<20} {'img/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'x base':>7} {'GiB':>6} {'busy':>5}")
    for r in rows:
        memory = r.get("gpu_mem_gib")
        print(f"{r['workload']:<8} {r['mode']:<20} {r['images_per_s']:>8} {r.get('p50_ms', '-'):>8} "
              f"{r.get('p95_ms', '-'):>8} {r.get('vs_baseline', ''):>7} {memory if memory is not None else '-':>6} "
              f"{r.get('busy', '-'):>5}")
    if skipped:
        print("skipped (time budget):", ", ".join(skipped))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


@contextmanager
def redis_for(url: str | None) -> Iterator[str]:
    """The Redis server given, or one started for the run (nothing persisted) and stopped after."""
    if url:
        yield url
        return
    import shutil
    import socket
    import subprocess

    import redis

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("the worker modes need Redis: pass --redis-url or install redis-server")
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
