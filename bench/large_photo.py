"""Large photos: the pipeline with the reduced model view vs the full image for the models, in-process.

Run: `OMP_NUM_THREADS=1 python bench/large_photo.py [--size 4032x3024] [--repeat 3]`
A 12 MP JPEG (rocket.jpg enlarged), tiny-random models, decode + segment + overlay JPEG at full size,
embedding cache off. Rounds alternate between the two ways so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
from pathlib import Path

from common import PHOTO, record, timed
from PIL import Image

from shared.images import load_rgb
from shared.settings import Settings
from worker import inputs, pipeline
from worker.embedding import Embedder, EmbeddingCache
from worker.models.registry import load_models

LIMITS = pipeline.Thresholds(0.0, 0.0, 3)


def main() -> None:
    """Median per image for each workload, full vs reduced view."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="4032x3024")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    buf = io.BytesIO()
    Image.open(PHOTO).convert("RGB").resize((w, h)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    with tempfile.TemporaryDirectory() as tmp:
        models = load_models(Settings(models="tiny-random", model_dir=Path(tmp), device="cpu", dtype="fp32"))
    workloads = {"points": {"points": [[w // 2, h // 2]], "labels": [1], "boxes": [], "outputs": ["overlay_jpeg"]},
                 "text": {"prompt": "rocket .", "outputs": ["overlay_jpeg"]}}
    side = inputs.MODEL_SIDE
    results = {}
    for name, params in workloads.items():
        times: dict[str, list[float]] = {"full": [], "reduced": []}
        for _ in range(args.repeat):
            for way in times:
                inputs.MODEL_SIDE = side if way == "reduced" else 10**9  # 10**9: never reduce

                def run(p=params) -> None:
                    image = load_rgb(data, 1 << 30, 1 << 30)
                    pipeline.run(Embedder(models.sam, EmbeddingCache(0)), models.dino, image, p, LIMITS)

                times[way].append(timed(run))
        inputs.MODEL_SIDE = side
        full, reduced = (statistics.median(times[k]) for k in ("full", "reduced"))
        results[name] = {"full_ms": round(1000 * full), "reduced_ms": round(1000 * reduced),
                         "speedup": round(full / reduced, 2)}
        print(f"  {name:<7} {args.size}: full {1000 * full:7.0f} ms, reduced view {1000 * reduced:7.0f} ms "
              f"-> {full / reduced:.2f}x")
    record("large-photo", {"size": args.size, "repeat": args.repeat, "results": results})


if __name__ == "__main__":
    main()
