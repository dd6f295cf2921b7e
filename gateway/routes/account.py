"""Health, readiness and the caller's credits."""

from __future__ import annotations

from flask import Blueprint, jsonify

from gateway.auth import authenticate
from gateway.services import services
from gateway.submit import workers_alive

bp = Blueprint("account", __name__)


@bp.get("/healthz")
def healthz():
    """The process is up."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Redis answers and at least one worker is alive."""
    svc = services()
    try:
        svc.redis.ping()
    except Exception:
        return jsonify({"status": "unavailable", "redis": False, "workers": False}), 503
    alive = workers_alive(svc)
    return jsonify({"status": "ready" if alive else "no_workers", "redis": True, "workers": alive}), (
        200 if alive else 503
    )


@bp.get("/v1/credits")
def credits():
    """The caller's balance."""
    key = authenticate()
    return jsonify({"credits": services().credits.balance(key.key_id), "name": key.name})
