"""The integration stack: real Redis, moto S3 server, gunicorn gateway and celery worker processes."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import ASTRONAUT_PNG, ROCKET_JPG
from tests.stack import Stack, new_stack, serve_directory, start_s3_server

MAIN_DB = 14


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """An empty model folder: the first worker builds tiny-random weights into it."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """A real S3 HTTP server (moto) on loopback."""
    proc, endpoint = start_s3_server(tmp_path_factory.mktemp("moto"))
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def image_host(tmp_path_factory):
    """host:port of an HTTP server holding photos/ (rocket.jpg, astronaut.png)."""
    root = tmp_path_factory.mktemp("www")
    (root / "photos").mkdir()
    shutil.copy(ROCKET_JPG, root / "photos" / "rocket.jpg")
    shutil.copy(ASTRONAUT_PNG, root / "photos" / "astronaut.png")
    server, host = serve_directory(root)
    yield host
    server.shutdown()


@pytest.fixture(scope="session")
def stack(tmp_path_factory, model_dir, s3_endpoint, image_host, redis_server) -> Stack:
    """The main deployment: S3 storage, one worker, one gateway."""
    st = new_stack(MAIN_DB, tmp_path_factory.mktemp("stack"), model_dir, s3_endpoint,
                   SAMQ_FETCH_ALLOW_HOSTS=image_host)
    try:
        st.start_worker("w1")
        st.start_gateway()
        yield st
    finally:
        st.stop()


@pytest.fixture
def key(stack) -> str:
    """A fresh key with 10 credits."""
    return stack.new_key(10)
