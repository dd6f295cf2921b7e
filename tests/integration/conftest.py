"""The integration stack: real Redis, moto S3 server, gunicorn gateway and celery worker processes."""

from __future__ import annotations

import shutil

import pytest

from harness.photos import ASTRONAUT_PNG, ROCKET_JPG
from harness.procs import free_port
from harness.stack import Stack, new_stack, running, serve_directory, start_s3_server

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
    """The main deployment: S3 storage, one worker, a gateway of two processes (as deployed), one webhook worker
    (short timeout and retries)."""
    st = new_stack(MAIN_DB, tmp_path_factory.mktemp("stack"), model_dir, s3_endpoint,
                   SAMQ_FETCH_ALLOW_HOSTS=image_host, SAMQ_WEBHOOK_ALLOW_HOSTS="127.0.0.1",
                   SAMQ_WEBHOOK_TIMEOUT_S="2", SAMQ_WEBHOOK_RETRY_SCHEDULE_S="0,1,2", SAMQ_GATEWAY_WORKERS="2")
    with running(st, {"w1": {}}):
        st.start_webhook_worker()
        yield st


@pytest.fixture
def key(stack) -> str:
    """A fresh key with 10 credits."""
    return stack.new_key(10)


@pytest.fixture(scope="module")
def bare(tmp_path_factory, model_dir, s3_endpoint, redis_server) -> Stack:
    """A gateway with no worker at all, and a low rate limit."""
    st = new_stack(12, tmp_path_factory.mktemp("bare"), model_dir, s3_endpoint, SAMQ_RATE_LIMIT_PER_MIN="6")
    with running(st):
        yield st


@pytest.fixture(scope="module")
def file_stack(tmp_path_factory, model_dir, redis_server) -> Stack:
    """Local-directory storage instead of S3, and a detector threshold nothing can pass."""
    st = new_stack(13, tmp_path_factory.mktemp("filestack"), model_dir, None, SAMQ_BOX_THRESHOLD="1.0")
    with running(st, {"wf": {}}):
        yield st


@pytest.fixture(scope="module")
def broken_stack(tmp_path_factory, model_dir, s3_endpoint, redis_server) -> Stack:
    """A worker whose storage is unreachable: every job is a server fault."""
    st = new_stack(11, tmp_path_factory.mktemp("broken"), model_dir, s3_endpoint, SAMQ_MAX_ATTEMPTS="1")
    with running(st, {"wb": {"SAMQ_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}}):
        yield st


@pytest.fixture(scope="module")
def batch_stack(tmp_path_factory, model_dir, s3_endpoint, redis_server) -> Stack:
    """A gateway whose worker (started by the test) may encode four images at once."""
    st = new_stack(9, tmp_path_factory.mktemp("batch"), model_dir, s3_endpoint, SAMQ_ENCODER_BATCH="4")
    with running(st):
        yield st


@pytest.fixture(scope="module")
def impatient_stack(tmp_path_factory, model_dir, redis_server) -> Stack:
    """A drop-in endpoint that waits only one second, and room for big photographs."""
    st = new_stack(8, tmp_path_factory.mktemp("impatient"), model_dir, None, SAMQ_SYNC_TIMEOUT_S="1",
                   SAMQ_MAX_IMAGE_BYTES=str(64 * 1024 * 1024), SAMQ_MAX_IMAGE_PIXELS="60000000")
    with running(st, {"wi": {}}):
        yield st
