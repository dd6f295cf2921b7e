"""Image batching: encode this job's image together with those of the jobs next in line.

Batching only fills the embedding cache. Which job runs next is still the broker's decision, in the
queues' priority order, so nothing can be reordered or starved: a job whose embedding was computed
early simply finds it in the cache when its own turn comes (on this worker; elsewhere it is recomputed).
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import numpy as np
from PIL import Image

from shared import names
from shared.jobs import JobStatus
from worker.embedding import Embedder
from worker.inputs import load_input, model_view
from worker.runtime import Runtime

log = logging.getLogger(__name__)
PREFILLED_MEMORY = 256  # job ids remembered as already encoded (per process)
_prefilled: OrderedDict[str, None] = OrderedDict()


def prefill_batch(rt: Runtime, embedder: Embedder, job: dict, image: Image.Image) -> int:
    """Encode up to max_batch images (this job's first) in one call; returns how many were encoded."""
    size = rt.settings.max_batch
    if size <= 1:
        return 0
    # The same reduced views (and cache keys) as the pipeline's, so its lookups hit.
    pixels, sizes = [np.asarray(model_view(image))], [(image.height, image.width)]
    taken = []
    for other_id in rt.jobs.peek_waiting(names.INFER_QUEUES, size + len(_prefilled) + 1):
        if len(pixels) >= size:
            break
        if other_id in _prefilled:  # encoded by an earlier batch: do not fetch and decode it again
            continue
        other = rt.jobs.get(other_id)
        # URL inputs are fetched once, by their own task; jobs already taken are not ours to touch.
        if other_id == job["id"] or not other or other["status"] != JobStatus.QUEUED or not other.get("input_key"):
            continue
        try:
            other_image = load_input(rt, other)
            pixels.append(np.asarray(model_view(other_image)))
            sizes.append((other_image.height, other_image.width))
            taken.append(other_id)
        except Exception:  # its own task will report the problem
            log.debug("skipping job %s in a batch", other_id, exc_info=True)
    if len(pixels) == 1:
        return 0
    encoded = embedder.prefill(pixels, sizes)
    for other_id in taken:
        _prefilled[other_id] = None
    while len(_prefilled) > PREFILLED_MEMORY:
        _prefilled.popitem(last=False)
    return encoded
