"""Pick device and precision, build random weights when asked, load the preset's models once per process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial

import torch
from sam2.sam2_image_predictor import SAM2ImagePredictor

from shared.errors import ModelsMissing
from shared.settings import Settings
from shared.weights import Preset, get_preset, missing_files
from worker.embedding import Embedder, EmbeddingCache
from worker.models.dino import Detector, build_random_dino, load_dino
from worker.models.sam import build_random_sam, load_sam
from worker.models.sam3 import Sam3Engine, build_random_sam3, load_sam3

log = logging.getLogger(__name__)
RANDOM_WARNING = (
    "SAMQ_MODELS=%s uses RANDOM WEIGHTS: its masks and boxes mean nothing. For tests and benchmarks only."
)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class Models:
    """What one worker process holds in memory."""

    preset: Preset
    device: str
    dtype: torch.dtype
    sam: SAM2ImagePredictor | None  # None under a SAM 3 preset
    dino: Detector | None
    embedder: Embedder | Sam3Engine  # the image encoder with its cache (a SAM 3 preset: the engine itself)
    sam3: Sam3Engine | None = None  # the SAM 3 engine (worker/models/sam3.py), under a SAM 3 preset


def resolve_device(setting: str) -> str:
    """auto -> cuda when available, else cpu."""
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("SAMQ_DEVICE=cuda but no CUDA device is available")
    if setting not in ("cuda", "cpu"):
        raise ValueError(f"SAMQ_DEVICE must be auto, cuda or cpu, not {setting!r}")
    return setting


def resolve_dtype(setting: str, device: str) -> torch.dtype:
    """auto -> bf16 on CUDA, fp32 on CPU."""
    if setting == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    if setting not in DTYPES:
        raise ValueError(f"SAMQ_DTYPE must be auto, bf16, fp16 or fp32, not {setting!r}")
    return DTYPES[setting]


def precision(device: str, dtype: torch.dtype) -> Callable[[], AbstractContextManager]:
    """A context factory running SAM 2 at the chosen precision (weights stay fp32; autocast does the rest)."""
    if dtype == torch.float32:
        return nullcontext
    return partial(torch.autocast, device_type=device, dtype=dtype)


def ensure_random_weights(preset: Preset, settings: Settings) -> None:
    """Build a random preset's checkpoints into the model folder if they are not there yet."""
    if preset.engine == "sam3":
        if not (settings.model_dir / preset.sam3_dir / "config.json").is_file():
            build_random_sam3(settings.model_dir / preset.sam3_dir, preset.sam3_arch)
        return
    ckpt = settings.model_dir / preset.sam_checkpoint
    if not ckpt.is_file():
        build_random_sam(preset.sam_config, ckpt, preset.sam_overrides)
    if not (settings.model_dir / preset.dino_dir / "config.json").is_file():
        build_random_dino(settings.model_dir / preset.dino_dir, preset.dino_arch)


def load_models(settings: Settings) -> Models:
    """Load SAM 2 and Grounding DINO for the configured preset through the production loaders."""
    preset = get_preset(settings.models, settings.detector)
    if preset.random:
        log.warning(RANDOM_WARNING, preset.name)
        ensure_random_weights(preset, settings)
    elif missing := missing_files(preset, settings.model_dir):
        raise ModelsMissing("missing or incomplete model files: " + ", ".join(map(str, missing))
                            + ("; run `make models PRESET=sam3` with HF_TOKEN (facebook/sam3 is gated: accept the SAM "
                               "License on Hugging Face first)" if preset.engine == "sam3" else "; run `make models`"))
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    if preset.engine == "sam3":
        engine = load_sam3(settings.model_dir / preset.sam3_dir, device,
                           EmbeddingCache(settings.embed_cache_mb * 1024 * 1024))
        engine.precision = precision(device, dtype)
        if settings.compile:  # the ViT backbone: the encode stage
            backbone = engine.model.vision_encoder.backbone
            engine.model.vision_encoder.backbone = torch.compile(backbone, mode="max-autotune", dynamic=False)
        log.info("models loaded: preset %s (SAM 3) on %s (%s)", preset.name, device, str(dtype).removeprefix("torch."))
        return Models(preset, device, dtype, None, None, engine, engine)
    sam = load_sam(preset.sam_config, settings.model_dir / preset.sam_checkpoint, device, preset.sam_overrides)
    if settings.compile:
        sam.model.image_encoder = torch.compile(sam.model.image_encoder, mode="max-autotune", dynamic=False)
    dino = load_dino(settings.model_dir / preset.dino_dir, device)
    dino.precision = precision(device, dtype)
    embedder = Embedder(sam, EmbeddingCache(settings.embed_cache_mb * 1024 * 1024), dino.precision)
    log.info("models loaded: preset %s on %s (%s)", preset.name, device, str(dtype).removeprefix("torch."))
    return Models(preset, device, dtype, sam, dino, embedder)


_lock = threading.Lock()
_models: Models | None = None


def get_models(settings: Settings) -> Models:
    """The process's models, loaded on first use."""
    global _models
    with _lock:
        if _models is None:
            _models = load_models(settings)
        return _models
