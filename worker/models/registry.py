"""Pick the device, build test weights when asked, and load the preset's models once per process."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import torch
from sam2.sam2_image_predictor import SAM2ImagePredictor

from shared.errors import ModelsMissing
from shared.models import Preset, get_preset, missing_files
from shared.settings import Settings
from worker.models.dino import Detector, build_random_dino, load_dino
from worker.models.sam import build_random_sam, load_sam

log = logging.getLogger(__name__)
RANDOM_WARNING = (
    "SAMQ_MODELS=%s uses RANDOM WEIGHTS: its masks and boxes mean nothing. For tests and smoke runs only."
)


@dataclass
class Models:
    """What one worker process holds in memory."""

    preset: Preset
    device: str
    sam: SAM2ImagePredictor
    dino: Detector


def resolve_device(setting: str) -> str:
    """auto -> cuda when available, else cpu."""
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("SAMQ_DEVICE=cuda but no CUDA device is available")
    return setting


def ensure_random_weights(preset: Preset, settings: Settings) -> None:
    """Build a random preset's checkpoints into the model folder if they are not there yet."""
    ckpt = settings.model_dir / preset.sam_checkpoint
    if not ckpt.is_file():
        build_random_sam(preset.sam_config, ckpt, preset.sam_overrides)
    if not (settings.model_dir / preset.dino_dir / "config.json").is_file():
        build_random_dino(settings.model_dir / preset.dino_dir)


def load_models(settings: Settings) -> Models:
    """Load SAM 2 and Grounding DINO for the configured preset through the production loaders."""
    preset = get_preset(settings.models, settings.detector)
    if preset.random:
        log.warning(RANDOM_WARNING, preset.name)
        ensure_random_weights(preset, settings)
    elif missing := missing_files(preset, settings.model_dir):
        raise ModelsMissing("missing model files: " + ", ".join(map(str, missing)) + "; run `make models`")
    device = resolve_device(settings.device)
    sam = load_sam(preset.sam_config, settings.model_dir / preset.sam_checkpoint, device, preset.sam_overrides)
    dino = load_dino(settings.model_dir / preset.dino_dir, device)
    log.info("models loaded: preset %s on %s", preset.name, device)
    return Models(preset, device, sam, dino)


_lock = threading.Lock()
_models: Models | None = None


def get_models(settings: Settings) -> Models:
    """The process's models, loaded on first use."""
    global _models
    with _lock:
        if _models is None:
            _models = load_models(settings)
        return _models
