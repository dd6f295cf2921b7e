"""How `samq-client batch` plans a folder: chunks by count and bytes, keys from content, resumable state."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
import requests
from samq_client import Client, SamqError
from samq_client import batch as batch_mod
from samq_client.batch import BatchRun, State, Wakeup

from harness.photos import ASTRONAUT_PNG, CHELSEA_PNG, ROCKET_JPG

SETTINGS = {"prompt": "cat", "outputs": None, "priority": "normal"}


@pytest.fixture
def folder(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, path in enumerate([ROCKET_JPG, ASTRONAUT_PNG, CHELSEA_PNG] * 2):
        shutil.copy(path, photos / f"{i}-{path.name}")
    (photos / "readme.txt").write_text("not an image")
    return photos


def _run(folder, out, settings=SETTINGS, chunk_size=2):
    return BatchRun(Client("http://127.0.0.1:9", "k"), folder, out, settings, chunk_size=chunk_size)


def test_chunks_are_planned_once_with_keys_from_their_content(folder, tmp_path):
    run = _run(folder, tmp_path / "out")
    run.plan()
    assert [len(c.files) for c in run.state.chunks] == [2, 2, 2]
    assert "readme.txt" not in {f for c in run.state.chunks for f in c.files}
    keys = [c.key for c in run.state.chunks]
    assert len(set(keys)) == 3
    # Elsewhere, same files and settings: the same keys (so a lost state file never means paying twice).
    other = _run(folder, tmp_path / "out2")
    other.plan()
    assert [c.key for c in other.state.chunks] == keys
    # Other settings: other keys.
    changed = _run(folder, tmp_path / "out3", {**SETTINGS, "prompt": "dog"})
    changed.plan()
    assert not set(keys) & {c.key for c in changed.state.chunks}


def test_a_rerun_keeps_its_chunks_and_plans_only_new_images(folder, tmp_path):
    out = tmp_path / "out"
    run = _run(folder, out)
    run.plan()
    run.state.chunks[0].batch_id = "b1"
    run.state.save(out / batch_mod.STATE_FILE)
    shutil.copy(ROCKET_JPG, folder / "0-new.jpg")  # sorts first: must not reshuffle the old chunks
    again = _run(folder, out)
    again.plan()
    assert [c.key for c in again.state.chunks[:3]] == [c.key for c in run.state.chunks]
    assert again.state.chunks[0].batch_id == "b1" and again.state.chunks[3].files == ["0-new.jpg"]
    assert State.load(out / batch_mod.STATE_FILE).chunks[3].files == ["0-new.jpg"]
    with pytest.raises(SamqError) as err:
        _run(folder, out, {**SETTINGS, "prompt": "dog"})
    assert err.value.code == "state_mismatch"


def test_chunks_stay_under_the_body_limit(folder, tmp_path, monkeypatch):
    limit = ASTRONAUT_PNG.stat().st_size * 4 // 3 + 10  # the astronaut fills a chunk alone
    monkeypatch.setattr(batch_mod, "MAX_CHUNK_BYTES", limit)
    run = _run(folder, tmp_path / "out", chunk_size=100)
    run.plan()
    assert [c.files for c in run.state.chunks] == [
        ["0-rocket.jpg"], ["1-astronaut.png"], ["2-chelsea.png", "3-rocket.jpg"], ["4-astronaut.png"],
        ["5-chelsea.png"]]
    for chunk in run.state.chunks:
        assert sum((folder / f).stat().st_size * 4 // 3 for f in chunk.files) <= limit


def test_a_webhook_delivery_wakes_the_poll_loop(folder, tmp_path):
    wakeup = Wakeup(("127.0.0.1", 0))
    try:
        run = BatchRun(Client("http://127.0.0.1:9", "k"), folder, tmp_path / "out", SETTINGS, wakeup=wakeup)
        assert run.webhook_url == wakeup.url and wakeup.url.startswith("http://127.0.0.1:")
        assert wakeup.wait(0.05) is False
        threading.Timer(0.2, lambda: requests.post(wakeup.url, json={"type": "job.succeeded"}, timeout=5)).start()
        start = time.monotonic()
        assert wakeup.wait(10) is True and time.monotonic() - start < 5
    finally:
        wakeup.close()
    assert Wakeup().url is None and Wakeup().wait(0.01) is False


def test_files_that_are_no_image_are_failed_without_being_sent(folder, tmp_path):
    (folder / "9-broken.png").write_bytes(b"GIF89a, not a PNG")
    run = _run(folder, tmp_path / "out")
    run.plan()
    assert "9-broken.png" not in {f for c in run.state.chunks for f in c.files}
    assert run.state.rejected == ["9-broken.png"] and run.state.errors["9-broken.png"]["code"] == "undecodable_image"
    assert run.progress == batch_mod.Progress(total=7, finished=1, failed=1)
    assert run.summary() == {"succeeded": 0, "failed": 1, "canceled": 0, "unfinished": 6}
    again = _run(folder, tmp_path / "out")  # resumed: planned once, not twice
    again.plan()
    assert again.state.rejected == ["9-broken.png"] and len(again.state.files) == 7


def test_back_pressure_pauses_submitting_while_results_are_collected(scripted, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(ROCKET_JPG, photos / "a.jpg")
    shutil.copy(CHELSEA_PNG, photos / "b.png")
    busy = {"error": {"code": "too_many_jobs", "message": "this key has 1 unfinished jobs"}}
    server = scripted(
        (202, {}, {"id": "b1", "job_ids": ["j1"]}),  # a.jpg accepted
        (429, {"Retry-After": "0"}, busy),  # b.png pushed back: the client gives up at once (max_retries=0)
        (200, {}, {"id": "b1", "total": 1, "jobs": [{"id": "j1", "status": "succeeded"}]}),
        (200, {"content-type": "application/octet-stream"}, b'{"a": 1}'),
        (202, {}, {"id": "b2", "job_ids": ["j2"]}),  # b.png sent again with the same key, accepted
        (200, {}, {"id": "b2", "total": 1, "jobs": [{"id": "j2", "status": "failed"}]}),
        (200, {}, {"id": "j2", "status": "failed", "error": {"code": "fetch_failed", "message": "gone"}}),
    )
    settings = {**SETTINGS, "outputs": ["json"]}
    run = BatchRun(Client(server.url, "k", max_retries=0), photos, tmp_path / "out", settings, chunk_size=1,
                   poll_s=0.01)
    run.plan()
    run.run()
    paths = [(method, path) for method, path, *_ in server.seen]
    assert paths == [("POST", "/v1/batches"), ("POST", "/v1/batches"), ("GET", "/v1/batches/b1?limit=1000"),
                     ("GET", "/v1/jobs/j1/result?output=json"), ("POST", "/v1/batches"),
                     ("GET", "/v1/batches/b2?limit=1000"), ("GET", "/v1/jobs/j2")]
    keys = [headers["Idempotency-Key"] for method, _, headers, *_ in server.seen if method == "POST"]
    assert keys[1] == keys[2] != keys[0]
    assert (tmp_path / "out" / "a.json").read_bytes() == b'{"a": 1}'
    assert run.summary() == {"succeeded": 1, "failed": 1, "canceled": 0, "unfinished": 0}
    assert run.state.errors == {"b.png": {"code": "fetch_failed", "message": "gone"}}
