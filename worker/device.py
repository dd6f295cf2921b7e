"""The device thread: the one thread that runs the models, fed by the worker's task threads.

A GPU worker runs Celery's threads pool with a few slots (SAMQ_WORKER_SLOTS). Each task thread carries one job
from START to FINISH, and does the CPU work on its side of the device: fetching, JPEG decoding, rendering,
encoding, uploading. For the model work it calls `Device.segment`, which queues a request and waits. This
thread takes every request waiting (up to SAMQ_ENCODER_BATCH), runs Grounding DINO for the text prompts, encodes
all the images still missing from the embedding cache in one batched call, then decodes each job's masks, in
priority order. So the device is busy whenever any job has model work, and batching across jobs needs no
look-ahead into the queue: the jobs in flight are the batch.

Why this shape: the model, its predictor state (set_image, then predict) and CUDA all stay on one thread, so
nothing in the model code has to be thread-safe; each job keeps the guarantees of the task that carries it
(START before device work, the cancel check before upload, FINISH once, ack after FINISH); and memory is
bounded by the slots: at most one request per task thread waits here.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from shared.records import Params
from worker import pipeline, sam3_pipeline
from worker.embedding import Embedder
from worker.inputs import Picture
from worker.metrics import DEVICE_SECONDS, Timings, timing
from worker.models.dino import Detection
from worker.models.registry import Models

log = logging.getLogger(__name__)


@dataclass
class Segmented:
    """What the device answers one job: its objects, whether the embedding was cached, the encoder batch size."""

    objects: list[pipeline.Object]
    cache_hit: bool
    batch: int | None = None  # images in the batched encoder call that computed this job's embedding


@dataclass(order=True)
class _Request:
    rank: tuple[int, int]  # (queue priority, arrival): high-priority jobs are answered first
    picture: Picture = field(compare=False)
    params: Params = field(compare=False)
    timings: Timings = field(compare=False)
    answer: Future = field(compare=False, default_factory=Future)
    found: list[Detection] | None = field(compare=False, default=None)
    batch: int | None = field(compare=False, default=None)


class Device:
    """Owns the models; `segment` may be called from any thread."""

    def __init__(self, models: Callable[[], Models], limits: pipeline.Thresholds, max_batch: int,
                 answer_timeout_s: float | None = None) -> None:
        self._models = models
        self.limits = limits
        self.max_batch = max_batch
        self.answer_timeout_s = answer_timeout_s  # a task never waits forever on a device that stopped answering
        self._waiting: list[_Request] = []
        self._arrivals = itertools.count()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the device thread (idempotent)."""
        with self._ready:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="samq-device", daemon=True)
                self._thread.start()

    def segment(self, picture: Picture, params: Params, priority: int = 1,
                timings: Timings | None = None) -> Segmented:
        """Run a job's models on the device thread and wait for the answer (its errors are raised here).

        `priority`: the job's queue's index in names.INFER_QUEUES (0 = high). The device's stage times are added
        to `timings`, a batched encoder call split evenly over the jobs it served.
        """
        self.start()
        request = _Request((priority, next(self._arrivals)), picture, params, timings or Timings())
        with self._ready:
            heapq.heappush(self._waiting, request)
            self._ready.notify()
        return request.answer.result(timeout=self.answer_timeout_s)  # TimeoutError: a server fault, retried

    def _serve(self) -> None:
        while True:
            with self._ready:
                while not self._waiting:
                    self._ready.wait()
                batch = [heapq.heappop(self._waiting) for _ in range(min(self.max_batch, len(self._waiting)))]
            started = time.perf_counter()
            try:
                self._run(batch)
            except BaseException as exc:  # never leave a task thread waiting
                log.exception("device thread failed a batch")
                for request in batch:
                    if not request.answer.done():
                        request.answer.set_exception(exc)
            finally:
                DEVICE_SECONDS.inc(time.perf_counter() - started)

    def _run(self, batch: list[_Request]) -> None:
        models = self._models()
        for request in batch:  # text prompts first find their boxes: a prompt that finds nothing needs no encoder
            if request.params.prompt and models.sam3 is None:  # SAM 3 finds its instances itself
                self._step(request, lambda r: setattr(r, "found", self._detect(r, models)))
        pending = [r for r in batch if not r.answer.done()]
        if len(pending) > 1:
            self._encode_together([r for r in pending if models.sam3 is not None
                                   or pipeline.needs_embedding(r.params, r.found)], models)
        for request in pending:
            self._step(request, lambda r: r.answer.set_result(self._segment(r, models)))

    def _detect(self, request: _Request, models: Models) -> list[Detection]:
        assert models.dino is not None  # a SAM 2 preset loads Grounding DINO
        return pipeline.detect_objects(models.dino, request.picture, request.params, self.limits)

    def _segment(self, request: _Request, models: Models) -> Segmented:
        if models.sam3 is not None:  # the SAM 3 engine (worker/sam3_pipeline.py)
            objects, hit = sam3_pipeline.segment(models.sam3, request.picture, request.params, self.limits)
            return Segmented(objects, hit and request.batch is None, request.batch)
        assert isinstance(models.embedder, Embedder) and models.dino is not None  # a SAM 2 preset loads both
        objects, hit = pipeline.segment(models.embedder, models.dino, request.picture, request.params, self.limits,
                                        request.found)
        return Segmented(objects, hit and request.batch is None, request.batch)

    @staticmethod
    def _step(request: _Request, step: Callable[[_Request], None]) -> None:
        """One model step of one job, its stage times going to that job; an error answers that job alone."""
        if request.answer.done():
            return
        try:
            with timing(request.timings):
                step(request)
        except Exception as exc:
            request.answer.set_exception(exc)

    def _encode_together(self, requests: list[_Request], models: Models) -> None:
        """One encoder call for the images of these requests not yet cached; its time is shared among them."""
        if len(requests) < 2:
            return
        shared = Timings()
        with timing(shared):
            keys = models.embedder.prefill([r.picture.pixels for r in requests], [r.picture.hw for r in requests],
                                           [r.picture.key for r in requests])
        if not keys:
            return
        each = shared.seconds.get("encode", 0.0) / len(keys)
        uncounted = set(keys)
        for request in requests:
            if request.picture.key in keys:
                request.batch = len(keys)
                if request.picture.key in uncounted:  # the call's time goes once to each image it encoded
                    uncounted.discard(request.picture.key)
                    request.timings.add("encode", each)
