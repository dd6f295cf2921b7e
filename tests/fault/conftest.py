"""A deployment to break: short visibility timeout so lost jobs come back quickly, large images allowed."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from PIL import Image

from harness.photos import jpeg_bytes
from harness.stack import Stack, new_stack, running, serve_slow_photo


@pytest.fixture(scope="session")
def fault_models(tmp_path_factory):
    return tmp_path_factory.mktemp("fault-models")


SLOW_FETCH_S = 4.0  # an attempt fetching slow_url stays running this long (the 24 MP picture takes under a second)


@pytest.fixture(scope="session")
def slow_url() -> str:
    """An image URL whose fetch takes SLOW_FETCH_S (a job stays running meanwhile)."""
    server, host = serve_slow_photo(delay_s=SLOW_FETCH_S)
    yield f"http://{host}/rocket.jpg"
    server.shutdown()


@pytest.fixture
def fault_stack(tmp_path_factory, fault_models, redis_server, slow_url) -> Stack:
    """Gateway + one worker (w1) on a fresh database; file storage; two attempts per job."""
    st = new_stack(10, tmp_path_factory.mktemp("fault"), fault_models, None, SAMQ_VISIBILITY_TIMEOUT_S="2",
                   SAMQ_MAX_ATTEMPTS="2", SAMQ_MAX_IMAGE_BYTES=str(64 * 1024 * 1024),
                   SAMQ_MAX_IMAGE_PIXELS="60000000", SAMQ_RESEND_AFTER_S="3",
                   SAMQ_FETCH_ALLOW_HOSTS=slow_url.split("/")[2])
    with running(st, {"w1": {}}):
        yield st


@pytest.fixture(scope="session")
def slow_image() -> str:
    """A 24-megapixel photo-like picture as base64: big enough that the worker is busy for a while."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:4000, 0:6000]
    base = np.stack([(x / 6000 * 255), (y / 4000 * 255), ((x + y) % 256)], axis=-1)
    noisy = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    return base64.b64encode(jpeg_bytes(Image.fromarray(noisy), quality=80)).decode()
