"""Every error becomes a JSON body with the right status, in this one place."""

from __future__ import annotations

import logging

import redis
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from shared.errors import (
    InsufficientCredits,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    SamqError,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)

log = logging.getLogger(__name__)

# Seconds a client should wait before retrying while Redis is unreachable (a restart takes a few).
REDIS_RETRY_AFTER_S = 5

# Werkzeug's HTTP errors (unknown route, wrong method, body over the limit, ...) with the codes of shared.errors.
_HTTP_CODES = {cls.status: cls.code for cls in (InvalidRequest, Unauthorized, NotFound, MethodNotAllowed,
                                                InsufficientCredits, TooLarge, UnsupportedMediaType, RateLimited)}


def error_response(code: str, message: str, status: int):
    """A JSON error response."""
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    """Map samq errors, HTTP errors and unexpected exceptions to JSON."""

    @app.errorhandler(SamqError)
    def _samq(exc: SamqError):
        response = error_response(exc.code, exc.message, exc.status)
        if exc.retry_after_s is not None:
            response.headers["Retry-After"] = str(max(1, int(exc.retry_after_s)))
        return response

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = (f"the body is larger than the limit of {request.max_content_length} bytes; send large "
                       "images by URL, or split the batch")
        response = error_response(_HTTP_CODES.get(status, "http_error"), message, status)
        if status == 405 and (methods := getattr(exc, "valid_methods", None)):  # werkzeug's MethodNotAllowed
            response.headers["Allow"] = ", ".join(methods)
        return response

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    def _redis_down(exc: Exception):
        # Redis restarting or unreachable: an answer the client can act on (retry), never a traceback.
        log.warning("Redis unavailable: %s", exc)
        response = error_response(Unavailable.code, "the service's store is unavailable; retry shortly",
                                  Unavailable.status)
        response.headers["Retry-After"] = str(REDIS_RETRY_AFTER_S)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response("internal_error", "internal server error", 500)
