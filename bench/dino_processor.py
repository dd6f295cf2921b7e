"""Grounding DINO pre-processing: transformers' PIL (numpy) image processor vs its torchvision one.

Run: `python bench/dino_processor.py [--repeat 5]`
Times the image processor alone (resize to 800 px shortest edge, normalise, pad) on a 1024x768 and a
4032x3024 photo, with the preprocessor settings of the real Grounding DINO-T, and reports which one the
service's loader (GroundingDinoProcessor.from_pretrained) picks.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import PHOTO, record, timed
from PIL import Image

from worker.models.dino import build_random_dino, load_dino


def main() -> None:
    """Median time per image for each processor and size."""
    from transformers.models.grounding_dino.image_processing_grounding_dino import GroundingDinoImageProcessor
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import (
        GroundingDinoImageProcessorPil,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        build_random_dino(Path(tmp), "test")
        service = type(load_dino(Path(tmp), "cpu").processor.image_processor).__name__
    size = {"shortest_edge": 800, "longest_edge": 1333}
    processors = {"pil (numpy)": GroundingDinoImageProcessorPil(size=size),
                  "torchvision": GroundingDinoImageProcessor(size=size)}
    photo = Image.open(PHOTO).convert("RGB")
    results = {}
    for label, dims in (("1024x768", (1024, 768)), ("4032x3024", (4032, 3024))):
        image = photo.resize(dims)
        for name, proc in processors.items():
            proc(images=image, return_tensors="pt")  # warm-up
            times = [timed(lambda p=proc, i=image: p(images=i, return_tensors="pt")) for _ in range(args.repeat)]
            results[f"{name} {label}"] = round(1000 * statistics.median(times), 1)
            print(f"  {name:<12} {label:>10}: {results[f'{name} {label}']:7.1f} ms")
    a = processors["pil (numpy)"](images=photo, return_tensors="pt")["pixel_values"]
    b = processors["torchvision"](images=photo, return_tensors="pt")["pixel_values"]
    diff = float((a - b).abs().max()) if a.shape == b.shape else None
    print(f"service loader picks {service}; torch threads {torch.get_num_threads()}; "
          f"max |pil - torchvision| pixel value {diff}")
    record("dino-processor", {"median_ms": results, "service_processor": service, "max_abs_diff": diff,
                              "shapes_equal": bool(a.shape == b.shape), "numpy": np.__version__})


if __name__ == "__main__":
    main()
