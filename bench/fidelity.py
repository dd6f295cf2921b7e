"""Fidelity guard: speed-ups must not change the answer.

The same random-weight models run two ways on real photographs: through the official APIs, as the sam2
README and the Grounded-SAM-2 demo call them (`SAM2ImagePredictor.set_image` + `predict`; transformers'
processor + `post_process_grounded_object_detection`), and through the service's pipeline. In fp32 with a
full decode the masks and boxes must be identical (the service's path is the worker's: a task thread hands the
job to the device thread, which encodes with the pixels scaled and resized on the model's device); each faster
mode must keep mask IoU >= 0.99; the uint8 overlay must stay within 2 per channel of the float blend it replaced.

Run: `python bench/fidelity.py [--preset tiny-random]` (prints the IoUs, writes bench/results/fidelity.json);
tests/integration/test_fidelity.py asserts the same on tiny-random.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/fidelity.py` imports this checkout

from sam2.sam2_image_predictor import SAM2ImagePredictor  # noqa: E402

from harness.photos import ASTRONAUT_PNG, CHELSEA_PNG, ROCKET_JPG  # noqa: E402
from shared.images import load_rgb  # noqa: E402
from shared.records import Params  # noqa: E402
from shared.settings import Settings  # noqa: E402
from worker import pipeline, render  # noqa: E402
from worker.device import Device  # noqa: E402
from worker.embedding import Embedder, EmbeddingCache  # noqa: E402
from worker.inputs import Picture, decode  # noqa: E402
from worker.models.dino import normalize_prompt  # noqa: E402
from worker.models.registry import DTYPES, Models, load_models, precision  # noqa: E402

# Low thresholds so the random detector always proposes boxes; at most three objects per prompt.
LIMITS = pipeline.Thresholds(box=0.0, text=0.0, max_objects=3)
MAX_BYTES, MAX_PIXELS = 64 << 20, 100_000_000


def cases(size: tuple[int, int]) -> dict[str, Params]:
    """Prompts of every kind, in image pixels of a (width, height) image."""
    w, h = size
    return {
        "one click": Params(points=[[w // 2, h // 2]], labels=[1]),
        "two clicks, one negative": Params(points=[[w // 3, h // 2], [2 * w // 3, h // 3]], labels=[1, 0]),
        "boxes": Params(boxes=[[w * 0.1, h * 0.1, w * 0.6, h * 0.7], [w * 0.4, h * 0.3, w * 0.9, h * 0.9]]),
        "text": Params(prompt="person . rocket . cat ."),
    }


def official(models: Models, image: Image.Image, params: Params) -> tuple[list[np.ndarray], list[list[float]]]:
    """Masks (and boxes for text) straight from the official APIs, fp32, no cache."""
    predictor = SAM2ImagePredictor(models.sam.model)
    predictor.set_image(np.array(image.convert("RGB")))
    boxes: list[list[float]] = []
    if params.prompt:
        dino = models.dino
        inputs = dino.processor(images=image, text=normalize_prompt(params.prompt), return_tensors="pt")
        with torch.no_grad():
            outputs = dino.model(**inputs.to(dino.device))
        found = dino.processor.post_process_grounded_object_detection(
            outputs, input_ids=inputs["input_ids"], threshold=LIMITS.box, text_threshold=LIMITS.text,
            target_sizes=[(image.height, image.width)])[0]
        order = torch.argsort(found["scores"], descending=True)[: LIMITS.max_objects]
        # The service clips detections to the image, as the demo's annotator does when it draws them.
        limit = torch.tensor([image.width, image.height] * 2, dtype=found["boxes"].dtype)
        clipped = torch.minimum(found["boxes"][order].clamp(min=0), limit)
        boxes = clipped.tolist()
        masks, _, _ = predictor.predict(box=clipped.numpy(), multimask_output=False)
        return [m > 0 for m in masks.reshape(-1, *masks.shape[-2:])], boxes
    if params.boxes:
        box = np.array(params.boxes, dtype=np.float32)
        masks, _, _ = predictor.predict(box=box, multimask_output=False)
        return [m > 0 for m in masks.reshape(-1, *masks.shape[-2:])], boxes
    single = len(params.points) == 1  # one click: three candidates, keep the best (SAM's advice)
    masks, scores, _ = predictor.predict(point_coords=np.array(params.points, dtype=np.float32),
                                         point_labels=np.array(params.labels), multimask_output=single)
    return [masks[int(np.argmax(scores))] > 0], boxes


@contextmanager
def at_precision(models: Models, dtype: str) -> Iterator[Embedder]:
    """A fresh embedder (its own cache) whose SAM 2 and Grounding DINO run at `dtype` (autocast, as SAMQ_DTYPE)."""
    before = models.dino.precision
    models.dino.precision = precision(models.device, DTYPES[dtype])
    try:
        yield Embedder(models.sam, EmbeddingCache(1 << 30), models.dino.precision)
    finally:
        models.dino.precision = before


def service(models: Models, embedder: Embedder, image: Image.Image | Picture, params: Params
            ) -> tuple[list[np.ndarray], list]:
    """Masks and boxes through the worker's path: this thread hands the job to a device thread and waits."""
    picture = image if isinstance(image, Picture) else Picture.of(image)
    device = Device(lambda: replace(models, embedder=embedder), LIMITS, max_batch=1)
    objects = device.segment(picture, params).objects
    return [o.mask for o in objects], [o.box for o in objects] if params.prompt else []


def float_overlay(image: Image.Image, masks: list[np.ndarray]) -> np.ndarray:
    """The overlay as the service drew it before the uint8 blend: float32 over the whole image."""
    out = np.asarray(image.convert("RGB"), dtype=np.float32).copy()
    for i, mask in enumerate(masks):
        colour = render.PALETTE[i % len(render.PALETTE)].astype(np.float32)
        out[mask] = out[mask] * 0.5 + colour * 0.5
        out[render.contour(mask)] = colour
    return out.round().astype(np.uint8)


def overlay_diff(image: Image.Image, masks: list[np.ndarray]) -> int:
    """Largest per-channel difference between the service's overlay and the float blend."""
    drawn = np.asarray(render.overlay(image, masks), dtype=np.int16)
    return int(np.abs(drawn - float_overlay(image, masks)).max())


def iou(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Mask IoU over all objects (1.0 when both are empty)."""
    if len(a) != len(b):
        return 0.0
    inter = sum(int((x & y).sum()) for x, y in zip(a, b, strict=True))
    union = sum(int((x | y).sum()) for x, y in zip(a, b, strict=True))
    return inter / union if union else 1.0


PHOTOS = (ROCKET_JPG, ASTRONAUT_PNG, CHELSEA_PNG)


def compare(models: Models, photos: tuple[Path, ...] = PHOTOS) -> dict[str, dict[str, float | bool]]:
    """For each photo and prompt: identical in fp32? and the IoU of each faster mode against the reference."""
    results: dict[str, dict[str, float | bool]] = {}
    for photo in photos:
        image = load_rgb(photo.read_bytes(), MAX_BYTES, MAX_PIXELS)
        other = np.asarray(load_rgb(CHELSEA_PNG.read_bytes(), MAX_BYTES, MAX_PIXELS).transpose(Image.FLIP_LEFT_RIGHT))
        for name, params in cases(image.size).items():
            ref_masks, ref_boxes = official(models, image, params)
            row: dict[str, float | bool] = {}
            with at_precision(models, "fp32") as embedder:
                masks, boxes = service(models, embedder, image, params)
                row["identical_fp32"] = len(masks) == len(ref_masks) and all(
                    np.array_equal(x, y) for x, y in zip(masks, ref_masks, strict=True)) and np.allclose(
                    np.array(boxes, dtype=float), np.round(np.array(ref_boxes, dtype=float), 1), atol=0.051)
                row["cache_hit"] = iou(service(models, embedder, image, params)[0], ref_masks)
                row["overlay_max_diff"] = overlay_diff(image, masks)
            with at_precision(models, "fp32") as embedder:
                embedder.prefill([other, np.asarray(image)])  # encoded in a batch with another photo
                row["batched"] = iou(service(models, embedder, image, params)[0], ref_masks)
            with at_precision(models, "bf16") as embedder:
                row["bf16"] = iou(service(models, embedder, image, params)[0], ref_masks)
            row["objects"] = len(ref_masks)
            row["mask_pixels"] = int(sum(m.sum() for m in ref_masks))
            results[f"{photo.name}: {name}"] = row
    return results


def large_jpeg(photo: Path, scale: int = 5) -> bytes:
    """A photo enlarged past 2x the models' 1024 px (so the pipeline reduces it), as a JPEG."""
    image = load_rgb(photo.read_bytes(), MAX_BYTES, MAX_PIXELS)
    buf = io.BytesIO()
    image.resize((image.width * scale, image.height * scale), Image.LANCZOS).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def compare_reduced(models: Models, photos: tuple[Path, ...] = PHOTOS) -> dict[str, dict[str, float]]:
    """Large photos: the pipeline's reduced model view vs the official calls on the full-size image."""
    results = {}
    for photo in photos:
        data = large_jpeg(photo)
        image = load_rgb(data, MAX_BYTES, MAX_PIXELS)
        for name, params in cases(image.size).items():
            ref_masks, ref_boxes = official(models, image, params)
            with at_precision(models, "fp32") as embedder:
                masks, boxes = service(models, embedder, image, params)
                # No output shows the photo's pixels (json, masks): the JPEG is decoded at reduced scale instead.
                draft = decode(data, MAX_BYTES, MAX_PIXELS, ["json"])
                draft_masks, _ = service(models, embedder, draft, params)
            row = {"size": f"{image.width}x{image.height}", "reduced_view": iou(masks, ref_masks),
                   "draft_decode": iou(draft_masks, ref_masks)}
            if ref_boxes:
                row["max_box_shift_px"] = float(np.abs(np.array(boxes) - np.array(ref_boxes)).max())
            results[f"{photo.name} x5: {name}"] = row
    return results


def main() -> None:
    """Print the comparison table and record it."""
    from common import record

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny-random")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = load_models(Settings(models=args.preset, model_dir=Path(tmp), device="cpu", dtype="fp32"))
    results = compare(models)
    print(f"{'case':<44} {'fp32 identical':>14} {'cache':>7} {'batched':>8} {'bf16':>7} {'overlay diff':>12}")
    for case, r in results.items():
        print(f"{case:<44} {r['identical_fp32']!s:>14} {r['cache_hit']:7.4f} {r['batched']:8.4f} {r['bf16']:7.4f}"
              f" {r['overlay_max_diff']:>12}")
    reduced = compare_reduced(models)
    for case, r in reduced.items():
        print(f"{case:<44} {r['size']:>11}  reduced view IoU {r['reduced_view']:.4f}"
              f"  draft decode IoU {r['draft_decode']:.4f}"
              + (f"  boxes moved <= {r['max_box_shift_px']:.1f} px" if "max_box_shift_px" in r else ""))
    record("fidelity", {"preset": args.preset, "cases": results, "reduced_view": reduced})


if __name__ == "__main__":
    main()
