"""W1-W3: the worker's CPU stages against the codec floor, and one real worker's device-busy fraction and jobs/s.

Run: `python bench/pipelined.py [--only w1,w2] [--jobs 30] [--baseline REV] [--redis-url redis://127.0.0.1:6379]`

W1 (in-process, one thread): CPU time per job outside the models (decode the stored input, hash it for the
    embedding cache, render, encode, the masks every job keeps for dataset exports, upload to local storage)
    at 1920x1080 and 4032x3024, for `overlay_jpeg` and `json`, with two objects covering about a fifth of the
    photo each. Beside it, in the same run: the codec floor (Pillow decoding the photo plus a q90 JPEG encode
    of its size, which every overlay answer pays) and the code before the pipelined worker (full decode, the
    float32 whole-image blend).
W2/W3 (real processes): one worker under OMP_NUM_THREADS=1, tiny-random models, `--jobs` distinct
    photo-like JPEGs queued before it starts (one click each, `overlay_jpeg`). Busy fraction = the sum
    over jobs of their model stages (detect + encode + decode, from each job's `timings`) divided by the
    wall time from the first start to the last finish; jobs/s over the same wall time. `--baseline REV`
    runs that revision's worker on the same photos in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from common import (
    add_redis_arg,
    baseline_checkout,
    bench_stack,
    record,
    start_worker,
    summary_ms,
    wait_jobs,
    worker_figures,
)
from PIL import Image

from harness.photos import ASTRONAUT_PNG, ROCKET_JPG  # noqa: I001  (after common: this checkout first)

SIZES = {"1080p": (1920, 1080), "12MP": (4032, 3024)}
# Frames worth reporting in a worker's profile: ours, the models' and the codecs'.
WATCHED = ("worker/", "shared/", "sam2/", "torch/nn/", "PIL/", "cv2", "hashlib", "celery/app/trace", "kombu/", "redis/")


def photo_jpeg(size: tuple[int, int], seed: int) -> bytes:
    """A photo-like JPEG: a real photograph enlarged to `size`, shifted per seed, with sensor-like noise, q92."""
    rng = np.random.default_rng(seed)
    source = Image.open([ROCKET_JPG, ASTRONAUT_PNG][seed % 2]).convert("RGB")
    image = np.asarray(source.resize(size, Image.LANCZOS), dtype=np.int16)
    image = np.roll(image, int(rng.integers(0, size[0])), axis=1) + rng.normal(0, 4, image.shape).astype(np.int16)
    buf = io.BytesIO()
    Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def two_masks(size: tuple[int, int]) -> list[np.ndarray]:
    """Two overlapping elliptical objects, about a fifth of the picture each."""
    w, h = size
    yy, xx = np.ogrid[:h, :w]
    return [((xx - 0.4 * w) / (0.3 * w)) ** 2 + ((yy - 0.5 * h) / (0.35 * h)) ** 2 < 1,
            ((xx - 0.65 * w) / (0.25 * w)) ** 2 + ((yy - 0.55 * h) / (0.3 * h)) ** 2 < 1]


def w1(rounds: int) -> dict:
    """CPU per job outside the models: before, now, and the codec floor, interleaved."""
    from shared.storage import FileStorage

    storage = FileStorage(Path(tempfile.mkdtemp(prefix="samq-w1-")))
    results = {label: w1_size(size, rounds, storage) for label, size in SIZES.items()}
    for label, r in results.items():
        floor_ms = r["ms"]["floor"]["p50_ms"]
        print(f"W1 {label} ({r['jpeg_bytes'] // 1024} KB JPEG), CPU ms per job, p50 of {rounds}:")
        for name, st in r["ms"].items():
            print(f"  {name:<20} {st['p50_ms']:8.1f} ms   {st['p50_ms'] / floor_ms:5.2f}x floor")
        r["now_overlay_stages_ms"] = w1_stages(SIZES[label], 2 * rounds, storage)
        print("  now overlay_jpeg by step: " + ", ".join(f"{k} {v:.1f} ms" for k, v in
                                                          r["now_overlay_stages_ms"].items()))
    return results


def w1_stages(size: tuple[int, int], rounds: int, storage) -> dict[str, float]:
    """The now-overlay job's steps one by one (p50 CPU ms): where W1's time goes."""
    from worker import export, pipeline, render
    from worker.inputs import decode

    limit = 1 << 30
    data, masks = photo_jpeg(size, 0), two_masks(size)
    picture = decode(data, limit, limit, ["overlay_jpeg"])
    drawn = render.overlay(picture.full_pixels, masks)
    jpeg = render.to_jpeg(drawn)
    steps = {
        "decode": lambda: decode(data, limit, limit, ["overlay_jpeg"]),
        "overlay": lambda: render.overlay(picture.full_pixels, masks),
        "encode": lambda: render.to_jpeg(drawn),
        "masks.json": lambda: export.kept_masks(size, [pipeline.Object("points", 0.9, m, None) for m in masks]),
        "upload": lambda: storage.put("w1/steps.jpg", jpeg, "image/jpeg"),
    }
    out = {}
    for name, step in steps.items():
        times = []
        for _ in range(rounds):
            started = time.process_time()
            step()
            times.append(time.process_time() - started)
        out[name] = round(float(np.median(times)) * 1000, 2)
    return out


def w1_size(size: tuple[int, int], rounds: int, storage) -> dict:
    """W1 at one photo size."""
    from shared.images import load_rgb
    from shared.records import Params
    from worker import export, pipeline, render
    from worker.inputs import decode
    from worker.tasks import masks_key, result_key

    limit = 1 << 30
    data = photo_jpeg(size, 0)
    masks = two_masks(size)

    def fresh() -> list:  # new objects per call: each caches its RLE and area once, as a job's do
        return [pipeline.Object("points", 0.9, m, None) for m in masks]

    def floor() -> None:
        render.to_jpeg(load_rgb(data, limit, limit))

    def before(output: str) -> None:
        image = load_rgb(data, limit, limit)
        if output == "overlay_jpeg":
            out = np.asarray(image, dtype=np.float32).copy()
            for i, mask in enumerate(masks):
                colour = render.PALETTE[i].astype(np.float32)
                out[mask] = out[mask] * 0.5 + colour * 0.5
                out[render.contour(mask)] = colour
            body = render.to_jpeg(Image.fromarray(out.round().astype(np.uint8)))
        else:
            body = export.objects_json(image.size, fresh(), False)
        storage.put(result_key("w1-before", output), body, "application/octet-stream")

    def now(output: str) -> None:
        picture, objects = decode(data, limit, limit, [output]), fresh()
        picture.key  # noqa: B018 - the task thread hashes the pixels for the embedding cache
        files = pipeline.render_outputs(picture, objects, Params(outputs=[output]), consume=True)
        storage.put(result_key("w1-now", output), files[output][0], files[output][1])
        storage.put(masks_key("w1-now"), export.kept_masks(picture.size, objects), "application/json")

    paths = {"floor": floor}
    for output in ("overlay_jpeg", "json"):
        paths[f"before {output}"] = lambda o=output: before(o)
        paths[f"now {output}"] = lambda o=output: now(o)
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, call in paths.items():
            started = time.process_time()  # CPU seconds of this process: what the stage costs a core
            call()
            times[name].append(time.process_time() - started)
    stats = {name: summary_ms(t) for name, t in times.items()}
    floor_ms = stats["floor"]["p50_ms"]
    return {"jpeg_bytes": len(data), "ms": stats,
            "x_floor": {name: round(st["p50_ms"] / floor_ms, 2) for name, st in stats.items()}}


def submit_all(stack, key: str, photos: list[bytes]) -> list[str]:
    """Queue one job per photo (one click, overlay_jpeg) while no worker runs."""
    import base64

    ids = []
    for data in photos:
        body = {"image": base64.b64encode(data).decode(), "coordinates": "[600,400]", "outputs": ["overlay_jpeg"]}
        r = stack.post("/v1/jobs", body, key)
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    return ids


def drain(stack, key: str, ids: list[str], worker: str, code: Path | None, profile_to: Path | None) -> dict:
    """Start one worker on the queued jobs; busy fraction and jobs/s from the jobs' own records.

    `profile_to`: a file for py-spy's collapsed stacks of the worker while it drains the queue.
    """
    import signal

    from overhead import profile, top_frames

    proc = start_worker(stack, worker, code)
    spies = profile({profile_to.stem: proc.pid}, profile_to.parent) if profile_to else []
    try:
        jobs = wait_jobs(stack, key, ids)
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(timeout=60)
        stack.procs.pop(worker).terminate()
    figures = worker_figures(jobs)
    if profile_to and profile_to.is_file():
        figures["profile"] = top_frames(profile_to, 25, WATCHED)
    return figures


def w2(redis_url: str, n: int, baseline: str | None, profile: Path | None = None) -> dict:
    """One worker's device-busy fraction and jobs/s, this checkout and the baseline, same photos."""
    results: dict = {}
    env = {"OMP_NUM_THREADS": "1", "SAMQ_GATEWAY_WORKERS": "1"}
    for label, size in SIZES.items():
        count = n if label == "1080p" else max(n // 3, 10)
        photos = [photo_jpeg(size, seed) for seed in range(count)]
        runs = {"this": None} | ({"baseline": baseline} if baseline else {})
        for name, rev in runs.items():
            with contextlib.ExitStack() as stacks:
                code = None
                if rev:
                    code = baseline_checkout(rev, Path(stacks.enter_context(tempfile.TemporaryDirectory())))
                stack = stacks.enter_context(bench_stack(redis_url, 4, None, code=code,
                                                         SAMQ_MAX_IMAGE_BYTES=str(64 << 20),
                                                         SAMQ_MAX_IMAGE_PIXELS="50000000", **env))
                key = stack.new_key(10 ** 6)
                ids = submit_all(stack, key, photos)
                row = drain(stack, key, ids, "wpipe", code,
                            profile / f"worker-{label}-{name}.txt" if profile else None)
            results[f"{label} {name}"] = row
            print(f"W2/W3 {label} {name:<8} {row['jobs']} jobs in {row['wall_s']:.1f} s: "
                  f"{row['jobs_per_s']:.2f} jobs/s, device busy {row['busy']:.2f}  (median {row['median_timings_ms']})")
            for frame, share in row.get("profile", [])[:15]:
                print(f"    {share:5.1f}%  {frame}")
    return results


def main() -> None:
    """Run the chosen parts and record them in bench/results/pipeline.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="w1,w2", help="comma-separated: w1 (in-process), w2 (real worker)")
    parser.add_argument("--rounds", type=int, default=15, help="W1 calls per path")
    parser.add_argument("--jobs", type=int, default=30, help="W2 jobs at 1080p (a third as many at 12 MP)")
    parser.add_argument("--baseline", help="W2: also run this git revision's worker, e.g. 7829ba4")
    parser.add_argument("--profile", type=Path, help="W2: py-spy each worker while it drains; stacks in this folder")
    add_redis_arg(parser)
    args = parser.parse_args()
    parts = set(args.only.split(","))
    out: dict = {}
    if "w1" in parts:
        import torch

        torch.set_num_threads(1)
        out["w1"] = w1(args.rounds)
    if "w2" in parts:
        out["w2"] = w2(args.redis_url, args.jobs, args.baseline, args.profile)
    record("pipelined" + (f"-vs-{args.baseline}" if args.baseline else ""),
           {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, **out})


if __name__ == "__main__":
    main()
