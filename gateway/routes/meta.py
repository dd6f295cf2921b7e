"""What describes the service: Prometheus metrics (read from Redis, so every gateway process agrees),
the OpenAPI document, a docs page and the playground."""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Response, current_app, jsonify, send_from_directory, url_for
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from gateway.openapi import openapi_document
from gateway.services import Services, services
from shared import names, workers
from shared.errors import NotFound

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


# Swagger UI's files as the flask-swagger-ui wheel ships them: /docs works with no internet at all.
SWAGGER_DIST = Path(flask_swagger_ui.__file__).parent / "dist"
SWAGGER_FILES = ("swagger-ui.css", "swagger-ui-bundle.js", "index.css", "favicon-32x32.png")
DOCS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>samq API</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css"><link rel="icon" href="{assets}/favicon-32x32.png"></head>
<body><div id="ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({{url: "{spec}", dom_id: "#ui", validatorUrl: null}});</script>
</body></html>"""


@bp.get("/docs")
def docs():
    """A human view of the OpenAPI document, rendered by the vendored Swagger UI."""
    assets = url_for("meta.docs_asset", name="").rstrip("/")
    return Response(DOCS.format(spec=url_for("meta.openapi"), assets=assets), mimetype="text/html")


@bp.get("/docs/assets/<name>")
def docs_asset(name: str):
    """Swagger UI's own files."""
    if name not in SWAGGER_FILES:
        raise NotFound(f"no docs asset {name}")
    return send_from_directory(SWAGGER_DIST, name, max_age=3600)


@bp.get("/")
def playground():
    """The playground: pick an image, prompt or click, see the result (plain HTML, CSS and JS)."""
    return current_app.send_static_file("playground.html")
