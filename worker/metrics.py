"""A worker's Prometheus metrics and each job's stage timings.

A job's stages are timed with `stage(name)`; the times add up in the job's own `Timings` (bound to the running
task, or by the device thread to the job it is working for), which ends up on the job record (`timings`) and in
the stage histograms. Each worker process serves its own /metrics on SAMQ_WORKER_METRICS_PORT.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING

import torch
from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from worker.embedding import Embedder
    from worker.models.sam3 import Sam3Engine

log = logging.getLogger(__name__)

# The stages of a job, in order, as named in the job's `timings` (`<stage>_ms`) and the histogram's label.
STAGES = ("queue", "fetch", "detect", "encode", "decode", "render", "upload")
JOBS = Counter("samq_worker_jobs", "Jobs this worker ended or put back, by outcome", ["outcome"])
STAGE_SECONDS = Histogram(
    "samq_worker_stage_seconds", "Time a job spent in each stage (queue wait to upload)", ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
JOB_SECONDS = Histogram("samq_worker_job_seconds", "From acceptance to the result stored, per succeeded job",
                        buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800))
BATCH_SIZE = Histogram("samq_worker_batch_size", "Images encoded in one image-encoder call",
                       buckets=(1, 2, 4, 8, 16, 32, 64))
DEVICE_SECONDS = Counter("samq_worker_device_busy_seconds",
                         "Time the device thread spent running models: its rate() is the device-busy fraction")
MODEL_STAGES = ("detect", "encode", "decode")


class Timings:
    """Seconds spent per stage by one job, made when a worker starts it (so the queue wait ends now)."""

    def __init__(self, created_at: str | None = None) -> None:
        self.created = datetime.fromisoformat(created_at).timestamp() if created_at else time.time()
        self.seconds: dict[str, float] = {"queue": max(0.0, time.time() - self.created)}

    def add(self, name: str, seconds: float) -> None:
        """Count time for a stage (a stage may run more than once: a cache miss, then a batch)."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def as_record(self) -> dict[str, float]:
        """The job's `timings`: every stage in milliseconds (0 for a stage it did not need), and the total."""
        record = {f"{name}_ms": round(self.seconds.get(name, 0.0) * 1000, 1) for name in STAGES}
        record["total_ms"] = round((time.time() - self.created) * 1000, 1)
        return record

    def observe(self) -> None:
        """Put the stages this job ran into the histograms."""
        for name, seconds in self.seconds.items():
            STAGE_SECONDS.labels(name).observe(seconds)
        JOB_SECONDS.observe(time.time() - self.created)


_current: ContextVar[Timings | None] = ContextVar("job_timings", default=None)


@contextmanager
def timing(timings: Timings) -> Iterator[Timings]:
    """Make `timings` the one `stage` adds to, for the duration of a job."""
    token = _current.set(timings)
    try:
        yield timings
    finally:
        _current.reset(token)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time a block as one of the running job's stages (nothing is recorded outside a job)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        if name in MODEL_STAGES and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()  # CUDA runs asynchronously: without this the time lands in a later stage
        timings = _current.get()
        if timings is not None:
            timings.add(name, time.perf_counter() - started)


class WorkerCollector:
    """Embedding cache hits and misses, image-encoder calls and GPU memory, read at scrape time."""

    def __init__(self, embedder: Callable[[], Embedder | Sam3Engine | None]) -> None:
        self.embedder = embedder

    def describe(self) -> list:
        """Nothing up front: registering must not load the models."""
        return []

    def collect(self):
        """One scrape."""
        embedder = self.embedder()
        if embedder is not None:
            cache = CounterMetricFamily("samq_worker_embedding_cache", "Embedding cache lookups", labels=["result"])
            cache.add_metric(["hit"], embedder.cache.hits)
            cache.add_metric(["miss"], embedder.cache.misses)
            yield cache
            yield GaugeMetricFamily("samq_worker_embedding_cache_bytes", "Memory held by cached embeddings",
                                    value=embedder.cache.bytes)
            yield CounterMetricFamily("samq_worker_encoder_calls", "SAM 2 image-encoder calls",
                                      value=embedder.encoder_calls)
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            memory = GaugeMetricFamily("samq_worker_gpu_memory_bytes", "CUDA memory of this process",
                                       labels=["device", "kind"])
            for index in range(torch.cuda.device_count()):
                memory.add_metric([str(index), "allocated"], torch.cuda.memory_allocated(index))
                memory.add_metric([str(index), "reserved"], torch.cuda.memory_reserved(index))
                memory.add_metric([str(index), "max_allocated"], torch.cuda.max_memory_allocated(index))
            yield memory


def serve(host: str, port: int, embedder: Callable[[], Embedder | Sam3Engine | None]) -> None:
    """Serve /metrics on host:port in a background thread (port 0: not at all)."""
    if not port:
        return
    REGISTRY.register(WorkerCollector(embedder))
    try:
        start_http_server(port, addr=host)
    except OSError as exc:  # a worker without metrics still does its work
        log.error("cannot serve metrics on %s:%d: %s", host, port, exc)
        return
    log.info("worker metrics on http://%s:%d/metrics", host, port)
