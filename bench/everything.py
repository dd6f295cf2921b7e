"""Segment everything on this CPU: time per image of SAM2AutomaticMaskGenerator as the worker runs it
(worker/everything.py via pipeline.segment), with random weights, cold (encode + the grid) and warm (the
embedding cached: the grid of decoder calls only).

Run: `python bench/everything.py [--presets tiny-random,random-tiny] [--grid 8,16,32]`; recorded in
bench/results/everything.json. Random weights find nothing at the default thresholds (0.8, 0.95), so the default
rows time the decoder grid with no mask kept; the `thresholds 0` rows keep every mask (the bookkeeping cost:
RLE of noise masks, sam2's MaskData copies), which is what the tests run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import record
from PIL import Image

from harness.photos import ROCKET_JPG
from shared.records import Params
from shared.settings import Settings
from worker import pipeline
from worker.inputs import Picture
from worker.metrics import Timings, timing
from worker.models.registry import load_models

LIMITS = pipeline.Thresholds(0.35, 0.25, 100)


def run(models, picture: Picture, options: dict) -> dict:
    """One cold call (fresh cache) and one warm call (cache hit) of one configuration."""
    models.embedder.cache._entries.clear()
    models.embedder.cache.bytes = 0
    out = {}
    for name in ("cold", "warm"):
        timings = Timings()
        start = time.perf_counter()
        with timing(timings):
            objects, hit = pipeline.segment(models.embedder, models.dino, picture, Params(everything=options), LIMITS)
        out[name] = {"s": round(time.perf_counter() - start, 3), "objects": len(objects), "cache_hit": hit,
                     "encode_s": round(timings.seconds.get("encode", 0), 3),
                     "decode_s": round(timings.seconds.get("decode", 0), 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", default="tiny-random,random-tiny")
    parser.add_argument("--grid", default="8,16,32", help="points_per_side values at the default thresholds")
    args = parser.parse_args()
    picture = Picture.of(Image.open(ROCKET_JPG).convert("RGB"))  # 640x427 photograph
    rows = []
    for preset in args.presets.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            models = load_models(Settings(models=preset, model_dir=Path(tmp), device="cpu", dtype="fp32"))
        with torch.inference_mode():
            models.embedder.set_image(np.asarray(picture.view))  # warm-up
        configs = [{"points_per_side": n, "multimask": True} for n in map(int, args.grid.split(","))]
        configs.append({"points_per_side": 4, "multimask": False, "pred_iou_thresh": 0, "stability_score_thresh": 0})
        for options in configs:
            result = run(models, picture, options)
            row = {"preset": preset, "image": "rocket.jpg 640x427", **options, **result}
            rows.append(row)
            print(f"{preset:12s} pps {options['points_per_side']:2d} multimask {options['multimask']!s:5s} "
                  f"thresholds {'0' if 'pred_iou_thresh' in options else 'default'}: cold {result['cold']['s']:.2f} s "
                  f"(encode {result['cold']['encode_s']:.2f}), warm {result['warm']['s']:.2f} s, "
                  f"{result['warm']['objects']} objects", flush=True)
    record("everything", {"device": "cpu", "threads": torch.get_num_threads(), "rows": rows})


if __name__ == "__main__":
    main()
