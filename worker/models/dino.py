"""Grounding DINO through `transformers`: text -> boxes."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image
from transformers import (
    BertConfig,
    BertTokenizer,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessor,
    GroundingDinoProcessor,
    SwinConfig,
)

log = logging.getLogger(__name__)

# A small vocabulary for the random test model; real models bring their own tokenizer.
_TINY_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "a", "an", "the", "boy", "girl", "man",
               "woman", "person", "dog", "cat", "car", "tree", "sky", "face", "rocket", "cup", "coffee", "hat"]


@dataclass
class Detector:
    """A loaded Grounding DINO model with its processor."""

    model: GroundingDinoForObjectDetection
    processor: GroundingDinoProcessor
    device: str
    precision: Callable[[], AbstractContextManager] = nullcontext  # autocast for bf16/fp16, set by the registry


@dataclass(frozen=True)
class Detection:
    """One box found for a phrase."""

    label: str
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels


def normalize_prompt(prompt: str | list[str]) -> str:
    """Lower case, one phrase per object, each ending in a dot: 'Boy, dog' -> 'boy . dog .'."""
    phrases = prompt if isinstance(prompt, list) else re.split(r"[.,;\n]", prompt)
    cleaned = [" ".join(p.lower().split()) for p in phrases]
    return " ".join(f"{p} ." for p in cleaned if p)


def load_dino(folder: Path, device: str) -> Detector:
    """Load a Hugging Face-format Grounding DINO folder, offline."""
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"Grounding DINO folder not found or incomplete: {folder}")
    processor = GroundingDinoProcessor.from_pretrained(folder, local_files_only=True)
    # cast: transformers types from_pretrained as returning the model; with output_loading_info it is (model, info)
    model, info = cast(tuple[GroundingDinoForObjectDetection, dict[str, Any]], GroundingDinoForObjectDetection
                       .from_pretrained(folder, local_files_only=True, output_loading_info=True))
    # from_pretrained only warns about a partial checkpoint; we refuse one, as build_sam2 does.
    problems = {k: sorted(v) for k, v in info.items() if k != "error_msgs" and v} | (
        {"errors": info["error_msgs"]} if info.get("error_msgs") else {})
    if problems:
        raise RuntimeError(f"Grounding DINO checkpoint in {folder} does not match its config: {problems}")
    return Detector(model.to(device).eval(), processor, device)  # type: ignore[arg-type]  # transformers' @wraps(Module.to) hides the method


def _config(arch: str, vocab_size: int) -> GroundingDinoConfig:
    if arch == "tiny":  # transformers' defaults are Grounding DINO-T (Swin-T, BERT-base text encoder)
        return GroundingDinoConfig()
    if arch == "base":
        return GroundingDinoConfig(backbone_config=SwinConfig(
            embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12,
            out_features=["stage2", "stage3", "stage4"]))  # type: ignore[call-arg]  # transformers takes it through __post_init__'s kwargs
    return GroundingDinoConfig(
        backbone_config=SwinConfig(
            embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], out_features=["stage2", "stage3", "stage4"]
        ),  # type: ignore[call-arg]  # transformers takes it through __post_init__'s kwargs
        text_config=BertConfig(
            vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
        ),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=20, max_text_len=64,
    )


def build_random_dino(folder: Path, arch: str = "test", seed: int = 0) -> None:
    """Save a random Grounding DINO (and a small tokenizer) in Hugging Face format.

    arch "test" is 0.45M parameters for tests; "tiny"/"base" are the real architectures (real compute).
    """
    torch.manual_seed(seed)
    vocab = {word: i for i, word in enumerate(_TINY_WORDS)}
    model = GroundingDinoForObjectDetection(_config(arch, len(vocab)))
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)
    # The test model sees small images (fast); real architectures keep the real pre-processing (800 px).
    size = {"shortest_edge": 320, "longest_edge": 480} if arch == "test" else {"shortest_edge": 800,
                                                                               "longest_edge": 1333}
    image_processor = GroundingDinoImageProcessor(size=size)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    log.info("built random Grounding DINO in %s (%d params)", folder, sum(p.numel() for p in model.parameters()))


@torch.inference_mode()
def detect(
    detector: Detector, image: Image.Image, prompt: str | list[str], box_threshold: float, text_threshold: float,
    size: tuple[int, int] | None = None,
) -> list[Detection]:
    """Boxes for the phrases of a prompt, best first, in pixels of `size` (width, height; default the image's)."""
    width, height = size or image.size
    text = normalize_prompt(prompt)
    if not text:
        return []
    inputs = detector.processor(images=image, text=text, return_tensors="pt").to(detector.device)
    with detector.precision():
        outputs = detector.model(**inputs)
    # Post-process in fp32: bf16 keeps 8 bits of mantissa, a few pixels of error on a large image's boxes.
    outputs.logits, outputs.pred_boxes = outputs.logits.float(), outputs.pred_boxes.float()
    result = detector.processor.post_process_grounded_object_detection(
        outputs, input_ids=inputs["input_ids"], threshold=box_threshold, text_threshold=text_threshold,
        target_sizes=[(height, width)],
    )[0]
    labels = result["text_labels"] if "text_labels" in result else result["labels"]  # older transformers
    phrases = [p.strip() for p in text.split(" .") if p.strip()]
    found = []
    for box, score, label in zip(result["boxes"].cpu().numpy(), result["scores"].cpu().numpy(), labels, strict=True):
        x0, y0, x1, y1 = np.clip(box, 0, [width, height, width, height]).tolist()
        if x1 - x0 >= 1 and y1 - y0 >= 1:
            found.append(Detection(_phrase(str(label), phrases), float(score), (x0, y0, x1, y1)))
    return sorted(found, key=lambda d: d.score, reverse=True)


def _phrase(label: str, phrases: list[str]) -> str:
    """Map a decoded label back to the client's phrase (decoding may merge or cut phrases)."""
    label = label.replace("[SEP]", "").replace("[CLS]", "").strip(" .")
    for phrase in phrases:
        if phrase == label:
            return phrase
    for phrase in phrases:
        if phrase in label or (label and label in phrase):
            return phrase
    return label or phrases[0]
