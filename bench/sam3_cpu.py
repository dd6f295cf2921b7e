"""Time per text prompt of the SAM 3 engine on this machine (random weights, the production loaders).

For each round: the vision encoder once (cache miss), then text prompts on the cached image (one text pass, DETR
and mask heads, full-size masks), and a whole uncached call. Threshold 0 (random weights keep nothing at 0.5),
max_objects as given. Writes bench/results/sam3-cpu-<preset>.json with the date, revision and command.

    PYTHONPATH=$PWD .venv/bin/python bench/sam3_cpu.py --preset tiny-random-sam3 --rounds 5
    PYTHONPATH=$PWD .venv/bin/python bench/sam3_cpu.py --preset random-sam3 --rounds 2   # real size, slow on CPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from harness.photos import ROCKET_JPG as PHOTO
from shared.records import Params
from shared.settings import Settings
from worker import pipeline, sam3_pipeline
from worker.embedding import EmbeddingCache
from worker.inputs import Picture
from worker.models.registry import load_models

ROOT = Path(__file__).resolve().parent.parent
PHRASES = ["rocket", "sky", "smoke", "tower", "person", "car"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny-random-sam3")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-objects", type=int, default=20)
    ap.add_argument("--model-dir", default=None, help="default: a temporary folder (the model is built there)")
    args = ap.parse_args()
    model_dir = Path(args.model_dir or tempfile.mkdtemp(prefix="sam3-bench-"))
    started = time.perf_counter()
    models = load_models(Settings(models=args.preset, model_dir=model_dir, device="cpu", dtype="fp32"))
    load_s = time.perf_counter() - started
    engine = models.sam3
    limits = pipeline.Thresholds(box=0.0, text=0.0, max_objects=args.max_objects)
    image = Image.open(PHOTO).convert("RGB")
    encode, text, whole = [], [], []
    for r in range(args.rounds):
        picture = Picture.of(Image.fromarray(np.roll(np.asarray(image), 13 * (r + 1), axis=1)))
        engine.cache = EmbeddingCache(1 << 32)
        t = time.perf_counter()
        engine.set_image(picture.pixels, picture.hw, picture.key)
        encode.append(time.perf_counter() - t)
        for phrase in PHRASES:
            t = time.perf_counter()
            objects, hit = sam3_pipeline.segment(engine, picture, Params(prompt=phrase), limits)
            text.append(time.perf_counter() - t)
            assert hit and len(objects) == min(args.max_objects, engine.model.config.detr_decoder_config.num_queries)
        engine.cache = EmbeddingCache(1 << 32)
        t = time.perf_counter()
        sam3_pipeline.segment(engine, picture, Params(prompt="rocket"), limits)
        whole.append(time.perf_counter() - t)
    ms = lambda xs: round(1000 * statistics.median(xs), 1)  # noqa: E731
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "revision": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                   cwd=ROOT).stdout.strip(),
        "command": "PYTHONPATH=$PWD .venv/bin/python bench/sam3_cpu.py " + " ".join(sys.argv[1:]),
        "preset": args.preset, "image": f"{PHOTO.name} {image.size[0]}x{image.size[1]}",
        "params": sum(p.numel() for p in engine.model.parameters())
        + sum(p.numel() for n, p in engine.tracker.named_parameters() if not n.startswith("vision_encoder.backbone")),
        "load_s": round(load_s, 2), "rounds": args.rounds, "max_objects": args.max_objects,
        "encode_ms_median": ms(encode), "text_prompt_on_cached_image_ms_median": ms(text),
        "whole_text_call_uncached_ms_median": ms(whole), "cpu_count": os.cpu_count(),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
    }
    out = ROOT / "bench" / "results" / f"sam3-cpu-{args.preset}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
