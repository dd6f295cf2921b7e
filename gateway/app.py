"""The Flask application factory."""

from __future__ import annotations

import contextlib
import re
import uuid
from typing import cast

from flask import Flask, g, request
from flask.json.provider import DefaultJSONProvider

from gateway import metrics
from gateway.errors import register_error_handlers
from gateway.routes import account, batches, jobs, meta, segment, webhooks
from gateway.services import Services
from shared import logs
from shared.settings import Settings

_REQUEST_ID = re.compile(r"^[\w.-]{1,128}$")


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the gateway for the given settings."""
    settings = settings or Settings()
    app = Flask(__name__)
    # base64 costs 4/3 of the bytes; leave room for the other fields.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_image_bytes * 4 // 3 + 1024 * 1024
    # cast: Flask types app.json as the JSONProvider interface; what it builds is its DefaultJSONProvider
    cast(DefaultJSONProvider, app.json).sort_keys = False
    # "/v1/jobs/" and "/v1/jobs" are one route, and "//" is a 404: werkzeug's HTML redirects never reach clients.
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    app.extensions["samq"] = services or Services.build(settings)
    for module in (segment, jobs, batches, account, meta, webhooks):
        app.register_blueprint(module.bp)
    register_error_handlers(app)

    @app.before_request
    def _request_id() -> None:
        incoming = request.headers.get("x-request-id", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        # Every line logged for this request carries its id; a route may bind the job's id too (logs.bind),
        # and both are reset when the request ends.
        g.log_tokens = logs.bind(request_id=g.request_id, job_id=None)

    @app.teardown_request
    def _unbind(_: BaseException | None) -> None:
        # gunicorn's threads serve one request after another: the next must not inherit this one's id.
        if "log_tokens" in g:
            logs.unbind(g.pop("log_tokens"))

    metrics.instrument(app)

    @app.after_request
    def _headers(response):
        response.headers["x-request-id"] = g.get("request_id", uuid.uuid4().hex)
        key_id = g.get("key_id")
        if key_id is not None and "x-remaining-credits" not in response.headers:
            # Never turn a good answer into an error over a header.
            with contextlib.suppress(Exception):
                response.headers["x-remaining-credits"] = str(app.extensions["samq"].credits.balance(key_id))
        return response

    return app
