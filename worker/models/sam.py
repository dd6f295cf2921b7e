"""SAM 2 through the official `sam2` package: build, load strictly, predict."""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path

import torch
from sam2.build_sam import build_sam2
from sam2.sam2_image_predictor import SAM2ImagePredictor

log = logging.getLogger(__name__)


def load_sam(config: str, checkpoint: Path, device: str, overrides: tuple[str, ...] = ()) -> SAM2ImagePredictor:
    """Build SAM 2 from a packaged config and load its checkpoint strictly (missing/unexpected keys raise)."""
    if not checkpoint.is_file():
        raise FileNotFoundError(f"SAM 2 checkpoint not found: {checkpoint}")
    # build_sam2 loads with load_state_dict(strict=True) and raises RuntimeError on any key mismatch.
    try:
        model = build_sam2(config, str(checkpoint), device=device, mode="eval",
                           hydra_overrides_extra=list(overrides))
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile) as exc:
        raise RuntimeError(f"SAM 2 checkpoint {checkpoint} is corrupt ({exc}); run `samq models check`") from exc
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
