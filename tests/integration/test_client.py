"""samq-client end to end against the running stack: the package installs alone, the SDK and the CLI segment
real photographs, and a batch interrupted with Ctrl-C resumes without submitting or paying twice."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import samq_client
from PIL import Image
from samq_client import Client
from samq_client.batch import STATE_FILE

from harness.photos import ASTRONAUT_PNG, CHELSEA_PNG, PHOTO_DIR, ROCKET_JPG, open_image
from harness.procs import free_port, wait_until

ROOT = Path(__file__).parents[2]
CLIENT_DIR = ROOT / "client"
FORBIDDEN = {"torch", "flask", "celery", "gateway", "worker", "shared", "pydantic", "redis", "boto3"}


def cli(stack, key: str, *args: str, **kw) -> subprocess.CompletedProcess:
    """Run `samq-client` (as a module of the source tree, so the test needs no install) against the stack."""
    env = {**os.environ, "SAMQ_URL": stack.url, "SAMQ_API_KEY": key, "PYTHONPATH": str(CLIENT_DIR)}
    return subprocess.run([sys.executable, "-m", "samq_client.cli", *args], env=env, capture_output=True,
                          text=True, timeout=180, **kw)


def test_the_package_installs_alone_and_imports_nothing_of_the_service(stack, tmp_path):
    shutil.copytree(CLIENT_DIR, tmp_path / "src", ignore=shutil.ignore_patterns("*.egg-info", "build"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(tmp_path / "src"), "-w",
                    str(tmp_path / "dist")], check=True, timeout=120)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    wheel = next((tmp_path / "dist").glob("samq_client-*.whl"))
    subprocess.run([*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", str(wheel)], check=True,
                   timeout=120)
    site = next(venv.glob("lib/python*/site-packages"))
    assert sorted(p.name for p in site.iterdir() if not p.name.startswith("_")) == [
        "samq_client", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"]
    metadata = next(site.glob("samq_client-*.dist-info")).joinpath("METADATA").read_text()
    requires = sorted(line.split(":", 1)[1].split(">")[0].strip() for line in metadata.splitlines()
                      if line.startswith("Requires-Dist:"))
    assert "Name: samq-client" in metadata and requires == ["httpx", "requests", "rich"]
    assert (venv / "bin" / "samq-client").exists()
    # The installed console script against the stack; its two dependencies lent from this interpreter.
    key = stack.new_key(3, name="installed")
    probe = ("import sys, json, samq_client.cli as c; rc = c.main(['credits']); "
             "top = sorted({m.split('.')[0] for m in sys.modules}); "
             "print(json.dumps({'rc': rc, 'file': c.__file__, 'modules': top}))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, timeout=60,
                         env={"SAMQ_URL": stack.url, "SAMQ_API_KEY": key, "PATH": os.environ["PATH"],
                              "PYTHONPATH": sysconfig.get_paths()["purelib"]}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    credits_line, report_line = out.stdout.strip().splitlines()
    report = json.loads(report_line)
    assert json.loads(credits_line) == {"credits": 3, "name": "installed"}
    assert report["rc"] == 0 and report["file"].startswith(str(site))
    assert FORBIDDEN.isdisjoint(report["modules"]), FORBIDDEN & set(report["modules"])


def test_sdk_segments_paths_bytes_pil_images_and_urls(stack, image_host):
    key = stack.new_key(10)
    client = Client(stack.url, key)
    seg = client.segment(ROCKET_JPG, prompt="rocket", outputs=["overlay_jpeg", "mask_png", "json"])
    assert seg.job.succeeded and set(seg.outputs) == {"overlay_jpeg", "mask_png", "json"}
    assert open_image(seg.outputs["overlay_jpeg"]).size == (640, 427) and seg.json()["width"] == 640
    assert all(obj.label == "rocket" for obj in seg.objects)
    clicks = client.segment(Image.open(CHELSEA_PNG), points=[(200, 150), (260, 120)], negative_points=[(10, 10)],
                            outputs=["cutout_png"])
    cutout = open_image(clicks.outputs["cutout_png"])
    assert cutout.mode == "RGBA" and cutout.size == (451, 300)
    boxed = client.segment(ASTRONAUT_PNG.read_bytes(), boxes=[(100, 50, 400, 500)], outputs=["mask_png"])
    assert open_image(boxed.outputs["mask_png"]).size == (512, 512)
    assert client.credits().credits == 7
    # The drop-in (same path and fields as the hosted API), with an image URL.
    dropin = client.sam_v2_image(f"http://{image_host}/photos/astronaut.png", coordinates=[(250, 200)],
                                 overlay_mask=False)
    assert open_image(dropin).format == "JPEG" and open_image(dropin).size == (512, 512)
    assert client.credits().credits == 6


def test_sdk_submit_wait_result_and_named_errors(stack, image_host):
    key = stack.new_key(9)
    client = Client(stack.url, key)
    job = client.submit(ROCKET_JPG, prompt="rocket", outputs=["mask_png"], metadata={"who": "sdk"})
    assert job.status in ("queued", "running") and job.id
    done = client.wait(job, timeout_s=60)
    assert done.succeeded and done.metadata == {"who": "sdk"} and done.outputs == ["mask_png"]
    assert open_image(client.result(done, "mask_png")).size == (640, 427)
    assert client.result(done) == client.result(done.id, "mask_png")
    failed = client.wait(client.submit(f"http://{image_host}/photos/missing.jpg", prompt="x"), timeout_s=60)
    assert failed.status == "failed" and failed.error["code"] == "fetch_failed"
    with pytest.raises(samq_client.NoResult):
        client.result(failed)
    with pytest.raises(samq_client.JobFailed) as err:
        client.segment(f"http://{image_host}/photos/missing.jpg", prompt="x")
    assert err.value.code == "fetch_failed" and err.value.job.status == "failed"
    with pytest.raises(samq_client.InvalidRequest):
        client.submit(ROCKET_JPG, prompt="rocket", outputs=["nope"])
    with pytest.raises(samq_client.NotFound):
        client.get("no-such-job")
    with pytest.raises(samq_client.Unauthorized):
        Client(stack.url, "sk_wrong").credits()
    assert client.credits().credits == 8  # one success paid; the failure refunded; bad input free
    # A retried submit (same Idempotency-Key) is the same job, paid once; a queued job cancels and is refunded.
    first = client.submit(ROCKET_JPG, points=[(10, 10)], outputs=["json"], idempotency_key="sdk-job-1")
    assert client.submit(ROCKET_JPG, points=[(10, 10)], outputs=["json"], idempotency_key="sdk-job-1").id == first.id
    assert client.wait(first, timeout_s=60).succeeded
    with stack.paused("w1"):  # a job canceled while it is still queued is refunded at once
        second = client.submit(ROCKET_JPG, points=[(20, 20)], outputs=["json"], priority="low")
        assert client.cancel(second).status == "canceled"
    with pytest.raises(samq_client.NotCancelable):
        client.cancel(second)
    assert client.credits().credits == 7


def test_cli_segment_jobs_show_and_credits(stack, tmp_path):
    key = stack.new_key(5)
    out = tmp_path / "rocket.png"
    run = cli(stack, key, "segment", str(ROCKET_JPG), "--point", "320,200", "--point", "330,120",
              "--negative", "10,10", "--output", "mask_png", "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert Image.open(out).format == "PNG" and Image.open(out).size == (640, 427)
    job_id = run.stderr.split("job ", 1)[1].split(":", 1)[0]
    shown = cli(stack, key, "jobs", "show", job_id)
    assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "succeeded"
    run = cli(stack, key, "segment", str(CHELSEA_PNG), "--prompt", "cat", "-o", str(tmp_path / "cat.jpg"))
    assert run.returncode == 0 and Image.open(tmp_path / "cat.jpg").size == (451, 300)
    run = cli(stack, key, "segment", str(ROCKET_JPG), "--point", "320,200", "--drop-in", "-o", str(tmp_path / "d.jpg"))
    assert run.returncode == 0 and Image.open(tmp_path / "d.jpg").size == (640, 427)  # via POST /v1/sam-v2-image
    assert json.loads(cli(stack, key, "credits").stdout) == {"credits": 2, "name": "test"}
    missing = cli(stack, key, "jobs", "show", "no-such-job")
    assert missing.returncode == 1 and "not_found" in missing.stderr
    usage = cli(stack, key, "segment", str(ROCKET_JPG), "-o", str(tmp_path / "x.jpg"))
    assert usage.returncode == 2 and "--prompt" in usage.stderr


PHOTOS = [ROCKET_JPG, ASTRONAUT_PNG, CHELSEA_PNG, PHOTO_DIR / "coffee.png"]


def test_sdk_batch_submit_and_wait(stack):
    key = stack.new_key(5)
    client = Client(stack.url, key)
    items = [samq_client.job_body(path, points=[(100, 100)], outputs=["json"]) for path in PHOTOS[:2]]
    batch = client.submit_batch(items, priority="low", idempotency_key="sdk-batch-1")
    assert batch.total == 2 and len(batch.job_ids) == 2
    assert client.submit_batch(items, priority="low", idempotency_key="sdk-batch-1").id == batch.id  # replayed
    seen = []
    final = client.wait_batch(batch, timeout_s=120, poll_s=0.3, on_update=seen.append)
    assert final.done and final.counts.succeeded == 2 and {j.id for j in final.jobs} == set(batch.job_ids)
    assert seen[-1] is final and all(client.get(j).priority == "low" for j in batch.job_ids)
    assert client.credits().credits == 3  # two jobs, paid once


def test_cli_batch_interrupted_then_resumed_pays_once(stack, tmp_path):
    folder, out = tmp_path / "photos", tmp_path / "out"
    folder.mkdir()
    for path in PHOTOS:
        shutil.copy(path, folder / path.name)
    (folder / "notes.txt").write_text("not an image")  # not listed
    (folder / "broken.jpg").write_bytes(b"this is no JPEG")  # listed, refused before sending: failed, free
    key = stack.new_key(20)
    jobs_before = stack.job_count()
    args = ("batch", str(folder), "--prompt", "object", "-o", str(out), "--outputs", "overlay_jpeg,json",
            "--chunk-size", "2", "--poll", "0.2")
    env = {**os.environ, "SAMQ_URL": stack.url, "SAMQ_API_KEY": key, "PYTHONPATH": str(CLIENT_DIR)}
    def submitted():
        state = json.loads((out / STATE_FILE).read_text())
        return any(chunk["batch_id"] for chunk in state["chunks"])

    # The worker takes nothing during the first run, so Ctrl-C lands before any result, however fast it is.
    with stack.paused("w1"):
        # SIGINT as a terminal's Ctrl-C sends it: a suite run in the background starts its children with SIGINT
        # ignored, and Python then installs no KeyboardInterrupt handler.
        proc = subprocess.Popen([sys.executable, "-m", "samq_client.cli", *args], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        wait_until(submitted, 60, "the first chunk to be submitted", interval_s=0.02)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "run the same command again" in stderr
    state = json.loads((out / STATE_FILE).read_text())
    assert len(state["finished"]) < len(PHOTOS)  # it really stopped part-way

    resumed = cli(stack, key, *args)
    assert resumed.returncode == 1, resumed.stderr  # not every image succeeded: broken.jpg
    assert "broken.jpg" in resumed.stdout and "undecodable_image" in resumed.stdout
    assert f"resuming: {len(state['finished'])} of {len(PHOTOS) + 1} already done" in resumed.stderr
    for path in PHOTOS:
        overlay = open_image((out / f"{path.stem}.overlay.jpg").read_bytes())
        assert overlay.format == "JPEG" and overlay.size == Image.open(path).size
        assert json.loads((out / f"{path.stem}.json").read_text())["width"] == Image.open(path).size[0]
    assert "succeeded" in resumed.stdout and f"credits left: {20 - len(PHOTOS)}" in resumed.stdout
    assert stack.balance(key) == 20 - len(PHOTOS) and stack.job_count() - jobs_before == len(PHOTOS)

    # Lose the state file (as if the first run died between sending a chunk and saving): the chunks' keys are
    # derived from their content, so the server answers with the batches it already has, and charges nothing.
    (out / STATE_FILE).unlink()
    again = cli(stack, key, *args)
    assert again.returncode == 1 and re.search(r"succeeded\W+4\b", again.stdout), again.stdout
    assert stack.balance(key) == 20 - len(PHOTOS) and stack.job_count() - jobs_before == len(PHOTOS)


def test_sdk_verifies_a_real_webhook_delivery(stack):
    got = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            got.append((dict(self.headers), self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        client = Client(stack.url, stack.new_key(2))
        job = client.submit(CHELSEA_PNG, points=[(200, 150)], outputs=["json"],
                            webhook_url=f"http://127.0.0.1:{server.server_address[1]}/hook")
        wait_until(lambda: got, 60, "the webhook")
        headers, body = got[0]
        event = samq_client.verify_webhook(client.webhook_secret(), headers, body)
        assert event["type"] == "job.succeeded" and event["data"]["id"] == job.id
        with pytest.raises(samq_client.WebhookVerificationError):
            samq_client.verify_webhook(client.webhook_secret(), headers, body.replace(b"succeeded", b"failed"))
    finally:
        server.shutdown()


def test_cli_batch_listening_for_webhooks_does_not_wait_for_its_poll(stack, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(CHELSEA_PNG, folder / "cat.png")
    key = stack.new_key(2)
    start = time.monotonic()
    # Status is read at once, then only every 120 s unless a webhook (batch.completed) wakes the loop.
    run = cli(stack, key, "batch", str(folder), "--prompt", "cat", "-o", str(tmp_path / "out"), "--outputs", "json",
              "--poll", "120", "--listen", f"127.0.0.1:{free_port()}")
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - start < 100 and json.loads((tmp_path / "out" / "cat.json").read_text())["width"] == 451
    assert stack.balance(key) == 1
