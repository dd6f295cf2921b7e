"""What describes the service: Prometheus metrics (read from Redis, so every gateway process agrees),
the OpenAPI document and a docs page."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, url_for
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from gateway.openapi import openapi_document
from gateway.services import Services, services
from shared import names, workers

bp = Blueprint("meta", __name__)


class RedisCollector:
    """Queue depths, live workers and job counters, as Redis holds them at scrape time."""

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
        jobs = CounterMetricFamily("samq_jobs", "Jobs accepted, and finished by status", labels=["event"])
        for field, value in sorted(client.hgetall(names.STATS).items()):
            jobs.add_metric([field.decode().removeprefix("jobs_")], int(value))
        yield jobs


@bp.get("/metrics")
def metrics():
    """Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(services()))
    return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")


@bp.get("/openapi.json")
def openapi():
    """The API described as OpenAPI 3.1."""
    return jsonify(openapi_document())


DOCS = """<!doctype html>
<html><head><meta charset="utf-8"><title>samq API</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"><p>The API is described in <a href="{spec}">{spec}</a>
(this page renders it with Swagger UI when your browser can load it).</p></div>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>if (window.SwaggerUIBundle) SwaggerUIBundle({{url: "{spec}", dom_id: "#ui"}});</script>
</body></html>"""


@bp.get("/docs")
def docs():
    """A human view of the OpenAPI document."""
    return Response(DOCS.format(spec=url_for("meta.openapi")), mimetype="text/html")
