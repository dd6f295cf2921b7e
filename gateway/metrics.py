"""The gateway's Prometheus metrics: its own requests, and what Redis holds (the same for every gateway).

Under gunicorn (gateway/gunicorn_conf.py) prometheus-client runs in multiprocess mode: each process writes its
counts to a file in SAMQ_METRICS_DIR and a scrape, served by any process, adds them all up.
"""

from __future__ import annotations

import logging
import os
import time

from flask import Flask, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.services import Services
from shared import logs, names, workers

log = logging.getLogger("samq.access")

# The gateway's own registry: nothing else in the process (e.g. a worker imported by a test) leaks in.
REGISTRY = CollectorRegistry()
REQUESTS = Counter("samq_requests", "HTTP requests answered, by route, method and status",
                   ["route", "method", "status"], registry=REGISTRY)
LATENCY = Histogram("samq_request_duration_seconds", "Time to answer an HTTP request, by route", ["route"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
                    registry=REGISTRY)
UNMATCHED = "unmatched"  # 404 and 405 share one label, so a scanner cannot grow the series without bound
CREDIT_EVENTS = ("reserved", "committed", "refunded")


def multiprocess_dir() -> str | None:
    """Where this process's metrics live when gunicorn_conf switched prometheus-client to files (its own switch)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def instrument(app: Flask) -> None:
    """Count and time every request, and write one access line per request."""

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _count(response):
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule else UNMATCHED
        REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        LATENCY.labels(route).observe(elapsed)
        job_id = (request.view_args or {}).get("job_id") or response.headers.get("x-job-id") or logs.current("job_id")
        log.info("%s %s %d %.1fms", request.method, request.path, response.status_code, elapsed * 1000,
                 extra={"method": request.method, "path": request.path, "route": route, "job_id": job_id,
                        "status": response.status_code, "duration_ms": round(elapsed * 1000, 1)})
        return response


class RedisCollector:
    """Queue depths, live workers, job and credit counters, as Redis holds them at scrape time."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def collect(self):
        """One scrape."""
        client = self.svc.redis
        depth = GaugeMetricFamily("samq_queue_depth", "Jobs sent to a queue and not yet started", labels=["queue"])
        for queue in names.INFER_QUEUES:
            depth.add_metric([queue], client.zcard(names.waiting(queue)))
        yield depth
        alive = workers.alive(client, self.svc.settings.worker_heartbeat_s)
        yield GaugeMetricFamily("samq_workers_alive", "Workers heard from recently", value=len(alive))
        stats = {k.decode(): int(v) for k, v in client.hgetall(names.STATS).items()}
        jobs = CounterMetricFamily("samq_jobs", "Jobs accepted, and finished by status", labels=["event"])
        for field, value in sorted(stats.items()):
            if field.startswith("jobs_"):
                jobs.add_metric([field.removeprefix("jobs_")], value)
        yield jobs
        credits = CounterMetricFamily("samq_credits", "Credits reserved at acceptance, then committed or refunded",
                                      labels=["event"])
        for event in CREDIT_EVENTS:
            credits.add_metric([event], stats.get(f"credits_{event}", 0))
        yield credits


def exposition(svc: Services) -> bytes:
    """One scrape in Prometheus text format: every process's request metrics plus Redis's counters."""
    registry = CollectorRegistry(auto_describe=False)
    path = multiprocess_dir()
    if path:
        MultiProcessCollector(registry, path=path)
    else:
        registry.register(REGISTRY)
    registry.register(RedisCollector(svc))
    return generate_latest(registry)
