"""Storage faults: the S3 server unreachable for a while, and a local storage directory that cannot be written."""

from __future__ import annotations

import base64
import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from harness.ledger import check_ledger
from harness.photos import ROCKET_JPG
from harness.stack import new_stack, running, start_s3_server
from tests.helpers import wait_for_job
from tests.proxy import TcpProxy

pytestmark = pytest.mark.timeout(400)
IMAGE = {"image": base64.b64encode(ROCKET_JPG.read_bytes()).decode(), "coordinates": "[320,200]"}


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    proc, endpoint = start_s3_server(tmp_path_factory.mktemp("moto-outage"))
    yield urlparse(endpoint).port
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.parametrize("outage_s", [8, pytest.param(30, marks=pytest.mark.slow)])
def test_s3_outage_mid_job_is_ridden_out_and_gateway_answers_503_meanwhile(tmp_path, fault_models, s3_server,
                                                                           slow_image, outage_s):
    proxy = TcpProxy(s3_server)
    proxy.up()
    stack = new_stack(7, tmp_path, fault_models, f"http://127.0.0.1:{proxy.port}",
                      SAMQ_MAX_IMAGE_BYTES=str(64 * 1024 * 1024), SAMQ_MAX_IMAGE_PIXELS="60000000")
    try:
        with running(stack, {"w1": {}}):
            key = stack.new_key(5)
            job_id = stack.post("/v1/jobs", {"image": slow_image, "coordinates": "[3000,2000]"}, key).json()["id"]
            wait_for_job(stack, key, job_id, ("running",), 120, "the job to start", interval_s=0.02)
            proxy.down()
            down_at = time.monotonic()
            refused = stack.post("/v1/jobs", IMAGE, key, timeout=60)  # the gateway cannot store the input
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "no_capacity", refused.text
            assert stack.balance(key) == 4  # only the running job holds credits
            time.sleep(max(0.0, outage_s - (time.monotonic() - down_at)))
            proxy.up()
            up_at = time.monotonic()
            final = wait_for_job(stack, key, job_id, ("succeeded", "failed"), 240, "the job to end", interval_s=0.2)
            assert final["status"] == "succeeded", final
            assert stack.get(f"/v1/jobs/{job_id}/result", key).status_code == 200
            assert stack.balance(key) == 4
            check_ledger(stack.redis, {key: 5})
        print(f"\nfigure: S3 unreachable {outage_s} s mid-job: job succeeded (attempts {final['attempts']}) "
              f"{time.monotonic() - up_at:.1f} s after S3 came back; gateway answered 503, nothing charged")
    finally:
        proxy.down()


def test_unwritable_file_storage_fails_cleanly_and_refunds(tmp_path, fault_models):
    stack = new_stack(6, tmp_path, fault_models, None, SAMQ_MAX_ATTEMPTS="2")
    root = Path(urlparse(stack.settings.storage).path)
    with running(stack, {"w1": {}}):
        key = stack.new_key(5)
        # A file where the results directory should be: every worker write fails with an OSError, as a
        # permission error or a full disk would (the tests run as root, so chmod would not stop a write).
        (root / "results").write_bytes(b"")
        job_id = stack.post("/v1/jobs", IMAGE, key).json()["id"]
        final = wait_for_job(stack, key, job_id, ("succeeded", "failed"), 120, "the job to end", interval_s=0.2)
        assert final["status"] == "failed" and final["attempts"] == 2 and final["error"]["code"] == "internal_error"
        assert stack.balance(key) == 5  # refunded
        # The same for the gateway's input write: 503, nothing charged, no job left behind.
        shutil.rmtree(root / "inputs")
        (root / "inputs").write_bytes(b"")
        jobs_before = stack.job_count()
        r = stack.post("/v1/jobs", IMAGE, key)
        assert r.status_code == 503 and r.json()["error"]["code"] == "no_capacity", r.text
        assert stack.balance(key) == 5
        check_ledger(stack.redis, {key: 5})
        assert stack.job_count() == jobs_before
