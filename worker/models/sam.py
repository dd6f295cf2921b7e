"""SAM 2 through the official `sam2` package: build, load strictly, predict."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from sam2.build_sam import build_sam2
from sam2.sam2_image_predictor import SAM2ImagePredictor

log = logging.getLogger(__name__)


def load_sam(config: str, checkpoint: Path, device: str, overrides: tuple[str, ...] = ()) -> SAM2ImagePredictor:
    """Build SAM 2 from a packaged config and load its checkpoint strictly (missing/unexpected keys raise)."""
    if not checkpoint.is_file():
        raise FileNotFoundError(f"SAM 2 checkpoint not found: {checkpoint}")
    # build_sam2 loads with load_state_dict(strict=True) and raises RuntimeError on any key mismatch.
    model = build_sam2(config, str(checkpoint), device=device, mode="eval", hydra_overrides_extra=list(overrides))
    return SAM2ImagePredictor(model)


def build_random_sam(config: str, checkpoint: Path, overrides: tuple[str, ...], seed: int = 0) -> None:
    """Save a random-weight SAM 2 checkpoint (`{"model": state_dict}`, the official layout)."""
    torch.manual_seed(seed)
    model = build_sam2(config, None, device="cpu", mode="eval", hydra_overrides_extra=list(overrides))
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    tmp = checkpoint.with_name(checkpoint.name + ".tmp")
    torch.save({"model": model.state_dict()}, tmp)
    tmp.replace(checkpoint)
    log.info("built random SAM 2 checkpoint %s (%d params)", checkpoint, sum(p.numel() for p in model.parameters()))


def predict_points(
    predictor: SAM2ImagePredictor, positive: list[list[float]], negative: list[list[float]]
) -> tuple[np.ndarray, float]:
    """One object from clicks (image already set): returns a bool mask (H, W) and its score."""
    coords = np.array(positive + negative, dtype=np.float32)
    labels = np.array([1] * len(positive) + [0] * len(negative), dtype=np.int32)
    # One click is ambiguous: ask for three masks and keep the best, as SAM's authors advise.
    multimask = len(coords) == 1
    masks, scores, _ = predictor.predict(point_coords=coords, point_labels=labels, multimask_output=multimask)
    best = int(np.argmax(scores))
    return masks[best] > 0, float(scores[best])


def predict_boxes(predictor: SAM2ImagePredictor, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One mask per box in one batched call: returns bool masks (N, H, W) and scores (N,)."""
    masks, scores, _ = predictor.predict(box=boxes.astype(np.float32), multimask_output=False)
    if masks.ndim == 3:  # a single box comes back without the batch axis
        masks, scores = masks[None], np.atleast_1d(scores)[None]
    return masks[:, 0] > 0, scores.reshape(len(boxes), -1)[:, 0]
