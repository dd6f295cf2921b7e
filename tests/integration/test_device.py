"""The device thread in-process (tiny random weights, production loaders): same answers as the calling thread,
jobs waiting together encoded in one call with its time shared out, priority order, one job's error its own."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from harness.photos import ASTRONAUT_PNG
from harness.procs import wait_until
from shared.errors import InvalidRequest
from shared.records import Params
from shared.settings import Settings
from tests.helpers import Gated
from worker import pipeline
from worker.device import Device
from worker.embedding import Embedder, EmbeddingCache
from worker.inputs import Picture
from worker.metrics import DEVICE_SECONDS, Timings
from worker.models.registry import load_models

LIMITS = pipeline.Thresholds(box=0.0, text=0.0, max_objects=3)
CLICK = Params(points=[[100, 120]], labels=[1], boxes=[])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return load_models(Settings(models="tiny-random", model_dir=tmp_path_factory.mktemp("m"), device="cpu",
                                dtype="fp32"))


def _fresh(models):
    """The models with an empty cache of their own (other tests must not decide what is cached)."""
    return replace(models, embedder=Embedder(models.sam, EmbeddingCache(1 << 30)))


def _photos(n: int) -> list[Picture]:
    base = np.asarray(Image.open(ASTRONAUT_PNG).convert("RGB"))
    return [Picture.of(Image.fromarray(np.roll(base, 37 * i, axis=1))) for i in range(n)]


def _submit(device: Device, picture: Picture, params: Params, answers: dict, name: str, priority: int = 1,
            timings: Timings | None = None) -> threading.Thread:
    def run() -> None:
        try:
            answers[name] = device.segment(picture, params, priority, timings)
        except Exception as exc:
            answers[name] = exc
        answers.setdefault("order", []).append(name)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _waiting(device: Device, n: int) -> None:
    wait_until(lambda: len(device._waiting) == n, 10, f"{n} requests waiting")


@pytest.mark.parametrize("params", [CLICK, Params(points=[], labels=[], boxes=[[40, 40, 300, 400]]),
                                    Params(prompt="boy . dog .")], ids=["click", "box", "text"])
def test_device_answers_as_the_calling_thread(models, params):
    picture = _photos(1)[0]
    here, _ = pipeline.segment(_fresh(models).embedder, models.dino, picture, params, LIMITS)
    there = Device(lambda: _fresh(models), LIMITS, max_batch=1).segment(picture, params)
    assert len(here) == len(there.objects) >= 1
    for a, b in zip(here, there.objects, strict=True):
        assert np.array_equal(a.mask, b.mask) and a.score == b.score and a.box == b.box and a.label == b.label
    assert there.cache_hit is False and there.batch is None


def test_jobs_waiting_together_share_one_encoder_call_and_its_time(models):
    own = _fresh(models)
    gated = Gated(own)
    device = Device(gated, LIMITS, max_batch=4)
    pictures, answers = _photos(4), {}
    timings = [Timings() for _ in pictures]
    busy_before = DEVICE_SECONDS._value.get()
    first = _submit(device, pictures[0], CLICK, answers, "a", timings=timings[0])
    wait_until(lambda: gated.calls == 1, 10, "the device thread holding the first job")
    threads = [first] + [_submit(device, p, CLICK, answers, n, timings=t)
                         for p, n, t in zip(pictures[1:], "bcd", timings[1:], strict=True)]
    _waiting(device, 3)
    calls = own.embedder.encoder_calls
    gated.gate.set()
    for thread in threads:
        thread.join(30)

    assert answers["a"].batch is None and all(answers[n].batch == 3 for n in "bcd")
    assert own.embedder.encoder_calls == calls + 2  # a alone, then b, c and d in one call
    shares = [t.seconds["encode"] for t in timings[1:]]
    assert max(shares) - min(shares) < 1e-9 and shares[0] > 0  # one call's time, split evenly, counted once each
    assert all(not answers[n].cache_hit for n in "abcd")  # computed for them, not found from before
    busy = DEVICE_SECONDS._value.get() - busy_before
    model_s = sum(t.seconds.get(s, 0.0) for t in timings for s in ("detect", "encode", "decode"))
    assert model_s <= busy + 1e-6  # every model second was spent while the device counted itself busy
    # Batched, the masks are the ones each job gets alone.
    for picture, name in zip(pictures, "abcd", strict=True):
        alone, _ = pipeline.segment(_fresh(models).embedder, models.dino, picture, CLICK, LIMITS)
        assert np.array_equal(alone[0].mask, answers[name].objects[0].mask)


def test_waiting_jobs_are_answered_high_priority_first(models):
    gated = Gated(_fresh(models))
    device = Device(gated, LIMITS, max_batch=1)
    pictures, answers = _photos(4), {}
    threads = [_submit(device, pictures[0], CLICK, answers, "first")]
    wait_until(lambda: gated.calls == 1, 10, "the device thread holding the first job")
    for picture, (name, priority) in zip(pictures[1:], [("low", 2), ("normal", 1), ("high", 0)], strict=True):
        threads.append(_submit(device, picture, CLICK, answers, name, priority))
        time.sleep(0.05)  # arrival order: low, normal, high
    _waiting(device, 3)
    gated.gate.set()
    for thread in threads:
        thread.join(30)
    assert answers["order"] == ["first", "high", "normal", "low"]


def test_one_jobs_error_is_its_own(models):
    gated = Gated(_fresh(models))
    device = Device(gated, LIMITS, max_batch=4)
    pictures, answers = _photos(3), {}
    threads = [_submit(device, pictures[0], CLICK, answers, "first")]
    wait_until(lambda: gated.calls == 1, 10, "the device thread holding the first job")
    outside = Params(points=[[5000, 5000]], labels=[1])
    threads += [_submit(device, pictures[1], outside, answers, "bad"), _submit(device, pictures[2], CLICK, answers,
                                                                              "good")]
    _waiting(device, 2)
    gated.gate.set()
    for thread in threads:
        thread.join(30)
    assert isinstance(answers["bad"], InvalidRequest)
    assert answers["good"].objects[0].mask.any() and answers["first"].objects[0].mask.any()
    # The device thread lives on: the next job is answered.
    assert device.segment(pictures[0], CLICK).objects[0].mask.any()


def test_a_task_stops_waiting_for_a_device_that_does_not_answer(models):
    gated = Gated(_fresh(models))  # held until released: a device stuck in a call
    # 2 s: long enough for the answer after the gate opens on a loaded 2-core machine (0.5 s flaked there)
    device = Device(gated, LIMITS, max_batch=1, answer_timeout_s=2.0)
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        device.segment(_photos(1)[0], CLICK)
    assert 2.0 <= time.perf_counter() - started < 10  # the task fails (and is retried) instead of hanging
    gated.gate.set()
    assert device.segment(_photos(1)[0], CLICK).objects  # the device answers again once it is free
