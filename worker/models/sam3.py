"""SAM 3 through `transformers`: build, load strictly, encode once, then concept prompts or tracker prompts.

One Hugging Face folder holds both heads, as `facebook/sam3` does (a `sam3_video` config; weights under
`detector_model.*`, `tracker_model.*`, `tracker_neck.*`):

- `Sam3Model` (the concept head): text and/or exemplar boxes -> every instance (DETR queries, presence score,
  masks). Loaded with `Sam3Model.from_pretrained`.
- `Sam3TrackerModel` (the SAM-style head): clicks and boxes -> masks. Loaded with
  `Sam3TrackerModel.from_pretrained`; its ViT backbone is the detector's (the checkpoint stores it once), so the
  two share one module here and one backbone pass serves both heads.

What the embedding cache keeps per image is the ViT's output (`Sam3Features`): the expensive part. Each head's
own neck (a few convolutions) runs per call, in the `decode` stage. The arithmetic is that of the official calls
(processor -> model -> post-processing), except that only the instances kept are upsampled to full size
(tests/integration/test_sam3.py compares them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from transformers import (
    CLIPTextConfig,
    CLIPTokenizer,
    PreTrainedConfig,
    Sam3Config,
    Sam3ImageProcessor,
    Sam3Model,
    Sam3Processor,
    Sam3TrackerModel,
    Sam3TrackerProcessor,
    Sam3TrackerVideoConfig,
    Sam3VideoConfig,
    Sam3VideoModel,
    Sam3VisionConfig,
    Sam3ViTConfig,
)
from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

from worker.embedding import CachedEncoder, EmbeddingCache, cache_key
from worker.metrics import BATCH_SIZE, stage

log = logging.getLogger(__name__)
MASK_THRESHOLD = 0.5  # on sigmoid(mask logits), as post_process_instance_segmentation's default
UPSAMPLE_CHUNK = 16  # masks upsampled to full size at once (bounds the float memory on large photos)
# transformers 5.24 does not apply its own `tracker_model.(.+)` renaming when Sam3TrackerModel loads a whole
# sam3_video checkpoint (every tracker weight comes back "missing"); this mapping says it directly. The backbone
# and neck renamings of its conversion table still apply.
TRACKER_KEYS = {r"^tracker_model\.": ""}


@dataclass(frozen=True)
class Sam3Features:
    """The ViT backbone's output for one image (what both heads start from), and the size masks refer to."""

    hidden: torch.Tensor  # (1, tokens, hidden) last_hidden_state of the backbone
    grid: tuple[int, int]  # (height, width) in patches
    orig_hw: tuple[int, int]

    @property
    def nbytes(self) -> int:
        """Memory held by the tensor."""
        return self.hidden.numel() * self.hidden.element_size()


@dataclass
class Found:
    """One instance: its label (phrase), score, pixel box and full-size mask."""

    label: str
    score: float
    box: tuple[float, float, float, float]
    mask: np.ndarray


@dataclass
class Sam3Engine(CachedEncoder):
    """The loaded SAM 3 heads, their processors and the embedding cache; used from the device thread only."""

    model: Sam3Model
    tracker: Sam3TrackerModel
    processor: Sam3Processor
    tracker_processor: Sam3TrackerProcessor
    device: str
    cache: EmbeddingCache[Sam3Features]
    precision: Callable[[], AbstractContextManager] = nullcontext
    encoder_calls: int = 0
    _current: Sam3Features | None = field(default=None, repr=False)

    # -- the vision encoder, cached (the Embedder's interface, so the device thread batches it the same way) --

    def set_image(self, pixels: np.ndarray, orig_hw: tuple[int, int] | None = None, key: str | None = None) -> bool:
        """Make `pixels` the current image; True when its features came from the cache (no encoder run)."""
        orig_hw = orig_hw or tuple(pixels.shape[:2])
        key = key or cache_key(pixels, orig_hw)
        entry = self.cache.get(key)
        hit = entry is not None
        if entry is None:
            with stage("encode"):
                entry = self.encode([pixels], [orig_hw])[0]
            self.cache.put(key, entry)
        self._current = entry
        return hit

    def encode(self, images: list[np.ndarray], sizes: list[tuple[int, int]]) -> list[Sam3Features]:
        """One ViT pass over a batch of HWC uint8 images (the processor's resize and normalisation first)."""
        pixel_values = self.processor.image_processor(images=list(images), return_tensors="pt")["pixel_values"]
        pixel_values = pixel_values.to(self.device)
        # cast: transformers types a sub-config as dict | config | None; a loaded model's is its config
        patch = cast(PreTrainedConfig, self.model.config.vision_config).backbone_config.patch_size
        grid = (pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch)
        with torch.inference_mode(), self.precision():
            hidden = self.model.vision_encoder.backbone(pixel_values).last_hidden_state
        self.encoder_calls += 1
        BATCH_SIZE.observe(len(images))
        if len(images) == 1:
            return [Sam3Features(hidden, grid, sizes[0])]
        return [Sam3Features(hidden[i : i + 1].clone(), grid, size) for i, size in enumerate(sizes)]

    @property
    def current(self) -> Sam3Features:
        """The features of the image set last."""
        if self._current is None:
            raise RuntimeError("no image set")
        return self._current

    # -- the concept head: text and exemplars -> every instance --

    def detector_features(self, features: Sam3Features) -> Sam3VisionEncoderOutput:
        """The detector's neck on cached backbone features: what `get_vision_features` returns."""
        fpn, pos = self.model.vision_encoder.neck(_spatial(features))
        return Sam3VisionEncoderOutput(last_hidden_state=features.hidden, fpn_hidden_states=fpn,
                                       fpn_position_encoding=pos)

    def concept(self, phrases: Sequence[str | None], exemplars: list[list[float]], negatives: list[list[float]],
                threshold: float, max_objects: int) -> list[Found]:
        """Every instance of each phrase (None: exemplars alone) scoring >= threshold, best first, at most
        max_objects in all; the vision features are computed once, then one text pass per phrase."""
        features = self.current
        height, width = features.orig_hw
        boxes = [list(b) for b in exemplars] + [list(b) for b in negatives]
        box_labels = [1] * len(exemplars) + [0] * len(negatives)
        found: list[tuple[float, str, torch.Tensor, torch.Tensor]] = []
        with torch.inference_mode(), self.precision():
            vision = self.detector_features(features)
            for phrase in phrases:
                inputs = self.processor(
                    text=phrase if phrase is not None else "visual", original_sizes=[[height, width]],
                    input_boxes=[boxes] if boxes else None, input_boxes_labels=[box_labels] if boxes else None,
                    return_tensors="pt").to(self.device)
                inputs.pop("original_sizes", None)
                outputs = self.model(vision_embeds=vision, **inputs)
                scores = outputs.pred_logits.float().sigmoid()[0]
                if outputs.presence_logits is not None:
                    scores = scores * outputs.presence_logits.float().sigmoid()[0]
                keep = torch.nonzero(scores >= threshold).flatten()
                keep = keep[torch.argsort(scores[keep], descending=True)][:max_objects]
                label = phrase if phrase is not None else "exemplar"
                for i in keep.tolist():
                    found.append((float(scores[i]), label, outputs.pred_boxes[0, i].float(),
                                  outputs.pred_masks[0, i].float()))
            found.sort(key=lambda f: f[0], reverse=True)
            found = found[:max_objects]
            masks = _upsample([f[3].sigmoid() for f in found], (height, width), MASK_THRESHOLD)
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        return [Found(label, score, _xyxy((box.cpu() * scale).tolist()), mask)
                for (score, label, box, _), mask in zip(found, masks, strict=True)]

    # -- the tracker head: clicks and boxes --

    def tracker_embeddings(self, features: Sam3Features) -> list[torch.Tensor]:
        """What `Sam3TrackerModel.get_image_embeddings` computes, from cached backbone features."""
        t = self.tracker
        fpn, _ = t.vision_encoder.neck(_spatial(features))
        maps = list(fpn)
        maps[0] = t.mask_decoder.conv_s0(maps[0])
        maps[1] = t.mask_decoder.conv_s1(maps[1])
        maps = [m.flatten(2).permute(2, 0, 1) for m in maps]
        maps[-1] = maps[-1] + t.no_memory_embedding
        return [m.permute(1, 2, 0).view(1, -1, *size) for m, size in zip(maps, t.backbone_feature_sizes, strict=False)]

    def track(self, points: list[list[float]], labels: list[int], boxes: list[list[float]], multimask: bool,
              keep_all: bool) -> tuple[np.ndarray, np.ndarray]:
        """The tracker's masks on the current image: bool (objects, kept, H, W) at full size, and their scores
        (predicted IoU), best first. Several boxes: one object each; clicks (with at most one box): one object."""
        features = self.current
        height, width = features.orig_hw
        kwargs: dict = {"original_sizes": [[height, width]]}
        if points:
            kwargs.update(input_points=[[[list(p) for p in points]]], input_labels=[[list(labels)]])
        if boxes:
            kwargs["input_boxes"] = [[list(b) for b in boxes]]
        inputs = self.tracker_processor(images=None, return_tensors="pt", **kwargs).to(self.device)
        inputs.pop("original_sizes", None)
        with torch.inference_mode(), self.precision():
            out = self.tracker(image_embeddings=self.tracker_embeddings(features), multimask_output=multimask,
                               **inputs)
            low, scores = out.pred_masks[0].float(), out.iou_scores[0].float()  # (objects, candidates, h, w)
            order = torch.argsort(scores, dim=1, descending=True)
            if not keep_all:
                order = order[:, :1]
            low = torch.take_along_dim(low, order[:, :, None, None], dim=1)
            scores = torch.take_along_dim(scores, order, dim=1)
            n, k = low.shape[:2]
            masks = _upsample(list(low.reshape(n * k, *low.shape[-2:])), (height, width), 0.0)
        return np.stack(masks).reshape(n, k, height, width), scores.cpu().numpy()


def _spatial(features: Sam3Features) -> torch.Tensor:
    """(1, tokens, C) -> (1, C, h, w), as Sam3VisionModel.forward reshapes before its neck."""
    return features.hidden.view(features.hidden.shape[0], *features.grid, -1).permute(0, 3, 1, 2)


def _upsample(masks: list[torch.Tensor], size: tuple[int, int], threshold: float) -> list[np.ndarray]:
    """Bilinear to full size then threshold (the post-processors' arithmetic), a few masks at a time."""
    out: list[np.ndarray] = []
    for start in range(0, len(masks), UPSAMPLE_CHUNK):
        chunk = torch.stack(masks[start : start + UPSAMPLE_CHUNK]).float()
        big = F.interpolate(chunk[None], size=size, mode="bilinear", align_corners=False)[0]
        out += list((big > threshold).cpu().numpy())
    return out


def _xyxy(values: list[float]) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in values)
    return x0, y0, x1, y1


# -- loading and building --

def load_sam3(folder: Path, device: str, cache: EmbeddingCache[Sam3Features]) -> Sam3Engine:
    """Load both heads of a Hugging Face-format SAM 3 folder, offline; any missing or unexpected weight is refused."""
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"SAM 3 folder not found or incomplete: {folder}")
    processor = Sam3Processor.from_pretrained(folder, local_files_only=True)
    # cast: transformers types from_pretrained as returning the model; with output_loading_info it is (model, info)
    model, info = cast(tuple[Sam3Model, dict[str, Any]],
                       Sam3Model.from_pretrained(folder, local_files_only=True, output_loading_info=True))
    _refuse_partial("SAM 3 (concept head)", folder, info)
    tracker, info = cast(tuple[Sam3TrackerModel, dict[str, Any]], Sam3TrackerModel.from_pretrained(
        folder, local_files_only=True, output_loading_info=True, key_mapping=TRACKER_KEYS))
    _refuse_partial("SAM 3 (tracker head)", folder, info)
    model, tracker = model.to(device).eval(), tracker.to(device).eval()  # type: ignore[arg-type]  # transformers' @wraps(Module.to) hides the method
    # The checkpoint stores one ViT for both heads: share the module (one pass, one copy in memory).
    shared, own = model.vision_encoder.backbone.state_dict(), tracker.vision_encoder.backbone.state_dict()
    if shared.keys() == own.keys() and all(torch.equal(shared[k], own[k]) for k in shared):
        tracker.vision_encoder.backbone = model.vision_encoder.backbone
    else:
        raise RuntimeError(f"SAM 3 checkpoint in {folder}: the tracker's backbone differs from the detector's")
    tracker_processor = Sam3TrackerProcessor(image_processor=processor.image_processor)
    return Sam3Engine(model, tracker, processor, tracker_processor, device, cache)


def _refuse_partial(what: str, folder: Path, info: dict) -> None:
    problems = {k: sorted(v) for k, v in info.items() if k != "error_msgs" and v} | (
        {"errors": info["error_msgs"]} if info.get("error_msgs") else {})
    if problems:
        raise RuntimeError(f"{what} checkpoint in {folder} does not match its config: {problems}")


def tiny_tokenizer() -> CLIPTokenizer:
    """A byte-level CLIP tokenizer built offline (no merges): every character is a token."""
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in alphabet:
            vocab[char + suffix] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def _config(arch: str) -> tuple[Sam3VideoConfig, int]:
    """The sam3_video config of a random SAM 3 and its image size: "test" (0.55M params) or "real"."""
    if arch == "real":
        text = CLIPTextConfig(vocab_size=49408, hidden_size=1024, intermediate_size=4096, projection_dim=512,
                              num_hidden_layers=24, num_attention_heads=16, max_position_embeddings=32,
                              hidden_act="gelu", bos_token_id=0, eos_token_id=1)
        return Sam3VideoConfig(detector_config=Sam3Config(text_config=text)), 1008
    size = 224

    def vision() -> Sam3VisionConfig:
        return Sam3VisionConfig(
            backbone_config=Sam3ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                          intermediate_size=64, image_size=size, patch_size=14, window_size=8,
                                          global_attn_indexes=[0, 1], pretrain_image_size=size),
            fpn_hidden_size=32, backbone_feature_sizes=[[64, 64], [32, 32], [16, 16]])

    head = {"hidden_size": 32, "num_layers": 1, "num_attention_heads": 4, "intermediate_size": 64}
    detector = Sam3Config(
        vision_config=vision(),
        text_config=CLIPTextConfig(vocab_size=600, hidden_size=32, intermediate_size=64, projection_dim=32,
                                   num_hidden_layers=1, num_attention_heads=4, max_position_embeddings=32,
                                   bos_token_id=0, eos_token_id=1),
        geometry_encoder_config=head, detr_encoder_config=head, detr_decoder_config={**head, "num_queries": 20},
        mask_decoder_config={"hidden_size": 32, "num_attention_heads": 4})
    tracker = Sam3TrackerVideoConfig(
        vision_config=vision(), prompt_encoder_config={"hidden_size": 32, "image_size": size, "patch_size": 14},
        mask_decoder_config={"hidden_size": 32, "mlp_dim": 64, "num_attention_heads": 4, "iou_head_hidden_dim": 32},
        memory_attention_hidden_size=32, memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=64,
        memory_encoder_hidden_size=32, memory_encoder_output_channels=16, mask_downsampler_embed_dim=32,
        memory_fuser_embed_dim=32, memory_fuser_intermediate_dim=64, memory_fuser_num_layers=1)
    config = Sam3VideoConfig(detector_config=detector, tracker_config=tracker)
    # The tracker's sub-config defaults override the image size given (1008): its setter puts it back everywhere.
    config.image_size = size
    cast(PreTrainedConfig, config.tracker_config).prompt_encoder_config.image_size = size  # cast: see encode()
    return config, size


def build_random_sam3(folder: Path, arch: str = "test", seed: int = 0) -> None:
    """Save a random-weight SAM 3 in facebook/sam3's layout (a Sam3VideoModel folder with its processor).

    arch "test" is tiny, for tests; "real" is the real architecture (real compute), for benchmarks.
    """
    torch.manual_seed(seed)
    config, size = _config(arch)
    model = Sam3VideoModel(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    image_processor = Sam3ImageProcessor(size={"height": size, "width": size})
    Sam3Processor(image_processor=image_processor, tokenizer=tiny_tokenizer()).save_pretrained(folder)
    log.info("built random SAM 3 in %s (%d params)", folder, sum(p.numel() for p in model.parameters()))
