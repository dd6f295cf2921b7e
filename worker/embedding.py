"""SAM 2 image embeddings: computed once per distinct image, kept in a byte-bounded LRU, batched when asked."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import torch
from sam2.sam2_image_predictor import SAM2ImagePredictor

from worker.metrics import BATCH_SIZE, stage


def image_key(pixels: np.ndarray) -> str:
    """SHA-256 of the decoded pixels and their shape: the same picture in any file format hits."""
    digest = hashlib.sha256(str(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).data)
    return digest.hexdigest()


def cache_key(pixels: np.ndarray, orig_hw: tuple[int, int]) -> str:
    """The cache key of an image, and of the size its masks refer to when the pixels are a reduced copy."""
    return image_key(pixels) + (f":{orig_hw[0]}x{orig_hw[1]}" if orig_hw != pixels.shape[:2] else "")


@dataclass(frozen=True)
class Embedding:
    """What SAM2ImagePredictor.set_image computes for one image."""

    image_embed: torch.Tensor
    high_res_feats: tuple[torch.Tensor, ...]
    orig_hw: tuple[int, int]

    @property
    def nbytes(self) -> int:
        """Memory held by the tensors."""
        return sum(t.numel() * t.element_size() for t in (self.image_embed, *self.high_res_feats))


class _Sized(Protocol):
    @property
    def nbytes(self) -> int: ...


E = TypeVar("E", bound=_Sized)  # what a cache holds: SAM 2's Embedding, SAM 3's Sam3Features


class EmbeddingCache(Generic[E]):
    """Least-recently-used embeddings, bounded by total bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, E] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> E | None:
        """The embedding for a key, marking it recently used."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def put(self, key: str, entry: E) -> None:
        """Store an embedding, evicting the least recently used past the byte bound."""
        if entry.nbytes > self.max_bytes:
            return  # larger than the whole cache (or the cache is off)
        with self._lock:
            if key in self._entries:
                self.bytes -= self._entries.pop(key).nbytes
            self._entries[key] = entry
            self.bytes += entry.nbytes
            while self.bytes > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                self.bytes -= old.nbytes

    def __len__(self) -> int:
        return len(self._entries)


class CachedEncoder:
    """What the device thread needs of an image encoder with a cache (SAM 2's Embedder, SAM 3's engine): `cache`, and
    `encode(images, sizes)` returning one cache entry per image; this adds the batched fill of the cache."""

    cache: EmbeddingCache[Any]

    def encode(self, images: list[np.ndarray], sizes: list[tuple[int, int]]) -> list:
        """One encoder call over a batch of HWC uint8 images."""
        raise NotImplementedError

    def prefill(self, images: list[np.ndarray], sizes: list[tuple[int, int]] | None = None,
                keys: list[str] | None = None) -> list[str]:
        """Encode the images not yet cached in one batched call; returns the cache keys it computed.

        `sizes`: each image's original (height, width) when the arrays are reduced copies (see set_image);
        `keys`: their cache keys, when known.
        """
        if self.cache.max_bytes <= 0:
            return []  # nowhere to keep them
        todo: dict[str, tuple[np.ndarray, tuple[int, int]]] = {}
        unknown_sizes: list[tuple[int, int] | None] = [None] * len(images)
        unknown_keys: list[str | None] = [None] * len(images)
        for pixels, size, key in zip(images, sizes or unknown_sizes, keys or unknown_keys, strict=True):
            size = size or tuple(pixels.shape[:2])
            key = key or cache_key(pixels, size)
            if key not in self.cache and key not in todo:
                todo[key] = (pixels, size)
        if not todo:
            return []
        with stage("encode"):
            entries = self.encode([pixels for pixels, _ in todo.values()], [size for _, size in todo.values()])
        for key, entry in zip(todo, entries, strict=True):
            self.cache.put(key, entry)
        return list(todo)


class Embedder(CachedEncoder):
    """Sets images on a SAM 2 predictor, from the cache when it can; counts image-encoder runs."""

    def __init__(self, predictor: SAM2ImagePredictor, cache: EmbeddingCache[Embedding],
                 precision: Callable[[], AbstractContextManager] = nullcontext) -> None:
        self.predictor = predictor
        self.cache: EmbeddingCache[Embedding] = cache
        self.precision = precision
        self.encoder_calls = 0

    def set_image(self, pixels: np.ndarray, orig_hw: tuple[int, int] | None = None, key: str | None = None) -> bool:
        """Make `pixels` the predictor's current image; True when the embedding came from the cache.

        `orig_hw`: the size the prompts and masks refer to, when `pixels` is a reduced copy of the image
        (the encoder sees 1024x1024 either way; masks come back at `orig_hw`). `key`: its cache_key, if known.
        """
        orig_hw = orig_hw or tuple(pixels.shape[:2])
        key = key or cache_key(pixels, orig_hw)
        entry = self.cache.get(key)
        hit = entry is not None
        if entry is None:
            with stage("encode"):
                entry = self.encode([pixels], [orig_hw])[0]
            self.cache.put(key, entry)
        self._restore(entry)
        return hit

    def encode(self, images: list[np.ndarray], sizes: list[tuple[int, int]]) -> list[Embedding]:
        """Run the image encoder once over a batch of images (HWC uint8); one Embedding per image.

        The same computation as SAM2ImagePredictor.set_image(_batch), except that the pixels go to the
        device as uint8 and are scaled, resized and normalised there: on CUDA that moves SAM 2's
        pre-processing off the CPU (on CPU it is the same arithmetic, bit for bit; tests/unit/test_embedding.py).
        """
        p = self.predictor
        with torch.inference_mode(), self.precision():
            batch = torch.cat([_to_model(p, pixels) for pixels in images])
            backbone_out = p.model.forward_image(batch)
            _, vision_feats, _, _ = p.model._prepare_backbone_features(backbone_out)
            if p.model.directly_add_no_mem_embed:  # as set_image does (no memory: a single image)
                vision_feats[-1] = vision_feats[-1] + p.model.no_mem_embed
            feats = [feat.permute(1, 2, 0).view(len(images), -1, *feat_size)
                     for feat, feat_size in zip(vision_feats[::-1], p._bb_feat_sizes[::-1], strict=True)][::-1]
        self.encoder_calls += 1
        BATCH_SIZE.observe(len(images))
        if len(images) == 1:
            return [Embedding(feats[-1], tuple(feats[:-1]), sizes[0])]
        # clone: a slice would keep the whole batch's storage alive in the cache
        return [Embedding(feats[-1][i : i + 1].clone(), tuple(f[i : i + 1].clone() for f in feats[:-1]), size)
                for i, size in enumerate(sizes)]

    def predict(self, points: np.ndarray | None, labels: np.ndarray | None, box: np.ndarray | None,
                multimask: bool, keep_all: bool) -> tuple[np.ndarray, np.ndarray]:
        """SAM 2's masks on the current image: bool (prompts, kept, H, W) at full size, and their scores.

        The arithmetic of SAM2ImagePredictor.predict, except that the candidates are chosen first (the best by
        predicted IoU, or all of them best first with `keep_all`) and only those are upsampled to full size and
        thresholded, on the model's device: a third of the work for one click, and bools, not floats, come back.
        """
        p = self.predictor
        with torch.inference_mode(), self.precision():
            _, coords, point_labels, boxes = p._prep_prompts(points, labels, box, None, True)
            low_res, scores = _decode(p, coords, point_labels, boxes, multimask)  # (prompts, candidates, 256, 256)
            order = torch.argsort(scores, dim=1, descending=True)
            if not keep_all:
                order = order[:, :1]
            low_res = torch.take_along_dim(low_res, order[:, :, None, None], dim=1)
            scores = torch.take_along_dim(scores, order, dim=1)
            masks = p._transforms.postprocess_masks(low_res, p._orig_hw[-1]) > p.mask_threshold
        return masks.cpu().numpy(), scores.float().cpu().numpy()

    def _restore(self, entry: Embedding) -> None:
        # The same state set_image leaves behind (restored features give the same masks).
        p = self.predictor
        p.reset_predictor()
        p._features = {"image_embed": entry.image_embed, "high_res_feats": list(entry.high_res_feats)}
        p._orig_hw = [entry.orig_hw]
        p._is_image_set = True
        p._is_batch = False


def _to_model(predictor: SAM2ImagePredictor, pixels: np.ndarray) -> torch.Tensor:
    """One HWC uint8 image as the encoder's 1x3x1024x1024 input, computed on the model's device."""
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)).to(predictor.device, non_blocking=True)
    # ToTensor's arithmetic (CHW, float32 / 255), then SAM 2's own scripted Resize + Normalize.
    tensor = tensor.permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    return predictor._transforms.transforms(tensor)[None]


def _decode(predictor: SAM2ImagePredictor, coords: torch.Tensor | None, labels: torch.Tensor | None,
            boxes: torch.Tensor | None, multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM2ImagePredictor._predict up to the low-resolution logits (before it upsamples every candidate)."""
    points: tuple[torch.Tensor, torch.Tensor] | None = None
    if coords is not None:
        assert labels is not None  # clicks come with their labels
        points = (coords, labels)
    if boxes is not None:  # boxes go first among the points, labelled 2 and 3 (as _predict does)
        box_coords = boxes.reshape(-1, 2, 2)
        box_labels = torch.tensor([[2, 3]], dtype=torch.int, device=boxes.device).repeat(boxes.size(0), 1)
        points = (box_coords, box_labels) if points is None else (
            torch.cat([box_coords, points[0]], dim=1), torch.cat([box_labels, points[1]], dim=1))
    model = predictor.model
    sparse, dense = model.sam_prompt_encoder(points=points, boxes=None, masks=None)
    low_res, scores, _, _ = model.sam_mask_decoder(
        image_embeddings=predictor._features["image_embed"][-1].unsqueeze(0),
        image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
        repeat_image=points is not None and points[0].shape[0] > 1,  # several prompts on one image
        high_res_features=[level[-1].unsqueeze(0) for level in predictor._features["high_res_feats"]],
    )
    return low_res, scores
