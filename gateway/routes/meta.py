"""What describes the service: Prometheus metrics (gateway/metrics.py), the OpenAPI document, a docs page and
the playground."""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Response, current_app, jsonify, send_from_directory, url_for

from gateway.metrics import exposition
from gateway.openapi import openapi_document
from gateway.services import services
from shared.errors import NotFound

bp = Blueprint("meta", __name__)


@bp.get("/metrics")
def metrics():
    """Prometheus text format."""
    return Response(exposition(services()), mimetype="text/plain; version=0.0.4")


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
