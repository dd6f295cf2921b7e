"""Benchmarks of the embedding cache and image batching, SAM 2.1 hiera-t with random weights, on this CPU.

Run: `python bench/cache.py [--preset random-tiny] [--repeat 3] [--batch 4]` (P3; `make bench` runs it in the suite).
Results are printed and recorded in bench/results/p3-cache.json.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import record
from PIL import Image

from harness.photos import ASTRONAUT_PNG
from shared.weights import get_preset
from worker.embedding import Embedder, EmbeddingCache
from worker.models.sam import build_random_sam, load_sam

PHOTO = ASTRONAUT_PNG


def _images(n: int, size=(1024, 768)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8) for _ in range(n)]


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_cache(predictor, repeat: int) -> dict:
    """First prompt (encode + decode) vs a second prompt on the same image (cache hit)."""
    image = _images(1)[0]
    point = {"point_coords": np.array([[500.0, 400.0]]), "point_labels": np.array([1])}
    cold, warm = [], []
    for _ in range(repeat):
        embedder = Embedder(predictor, EmbeddingCache(1 << 30))
        cold.append(_timed(lambda e=embedder: (e.set_image(image), predictor.predict(**point))))
        warm.append(_timed(lambda e=embedder: (e.set_image(image), predictor.predict(**point))))
    return {"miss_s": statistics.median(cold), "hit_s": statistics.median(warm),
            "speedup": statistics.median(cold) / statistics.median(warm)}


def bench_batch(predictor, repeat: int, batch: int) -> dict:
    """Encoding `batch` images one by one vs in one set_image_batch call."""
    images = _images(batch)
    one, together = [], []
    for _ in range(repeat):
        single = Embedder(predictor, EmbeddingCache(0))
        one.append(_timed(lambda s=single: [s.set_image(i) for i in images]))
        batched = Embedder(predictor, EmbeddingCache(1 << 31))
        together.append(_timed(lambda b=batched: b.prefill(images)))
    return {"batch": batch, "sequential_s": statistics.median(one), "batched_s": statistics.median(together),
            "per_image_sequential_s": statistics.median(one) / batch,
            "per_image_batched_s": statistics.median(together) / batch}


def main() -> None:
    """Build the preset's random SAM 2 through the production loader and time both paths."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="random-tiny")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    preset = get_preset(args.preset)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "sam2.pt"
        build_random_sam(preset.sam_config, ckpt, preset.sam_overrides)
        predictor = load_sam(preset.sam_config, ckpt, "cpu", preset.sam_overrides)
    with torch.inference_mode():
        predictor.set_image(np.asarray(Image.open(PHOTO).convert("RGB")))  # warm-up
        cache = bench_cache(predictor, args.repeat)
        batch = bench_batch(predictor, args.repeat, args.batch)
    result = {"preset": args.preset, "device": "cpu", "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "repeat": args.repeat,
              "cache": cache, "batching": batch}
    print(f"preset {args.preset} on cpu ({torch.get_num_threads()} threads), median of {args.repeat}, 1024x768")
    print(f"  cache:    miss {cache['miss_s']:.3f} s, hit {cache['hit_s']:.3f} s -> {cache['speedup']:.1f}x")
    print(f"  batching: {batch['batch']} images one by one {batch['sequential_s']:.2f} s, "
          f"in one call {batch['batched_s']:.2f} s ({batch['per_image_batched_s']:.2f} s/image)")
    record("p3-cache", result)


if __name__ == "__main__":
    main()
