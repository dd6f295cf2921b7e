"""An in-process gateway on the flushed test Redis, with file storage: for route tests through create_app."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from gateway.app import create_app
from shared.settings import Settings


def make_app(redis_url: str, tmp_path: Path, **overrides: object) -> Flask:
    """The gateway with small limits and no rate limit (tests pass overrides)."""
    settings = Settings(redis_url=redis_url, storage_url=f"file://{tmp_path / 'storage'}", sync_timeout_s=0.5,
                        max_image_bytes=2 * 1024 * 1024, max_image_pixels=4_000_000, rate_limit_per_min=0,
                        **overrides)
    app = create_app(settings)
    app.testing = True
    return app
