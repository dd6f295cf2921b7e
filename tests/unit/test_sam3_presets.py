"""SAM 3 presets (no torch): manifest, the clear failure without pinned or authorised weights, and the gateway's
checks of exemplars (conflicts, a preset that cannot use them) and of the job's `model`."""

from __future__ import annotations

import base64
import io

import pytest
import requests
from PIL import Image

from shared import names, weights, workers
from shared.errors import InvalidRequest
from shared.keys import KeyStore, hash_key
from shared.records import Params
from shared.schemas import JobRequest, parse_body
from shared.settings import Settings
from shared.weights import SAM3_PRESETS, check_prompts, engine_of, get_preset, missing_files, verify
from tests.unit.gateway_app import make_app

CREDITS = 5


def _png(width: int = 64, height: int = 48) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 100, 50)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_sam3_presets_and_engines():
    assert [engine_of(n) for n in ("large", "tiny-random", "random-tiny")] == ["sam2"] * 3
    for name in SAM3_PRESETS:
        preset = get_preset(name)
        assert preset.engine == "sam3" and engine_of(name) == "sam3" and preset.sam3_dir
    assert get_preset("tiny-random-sam3").random and get_preset("tiny-random-sam3").sam3_arch == "test"
    assert get_preset("random-sam3").random and get_preset("random-sam3").sam3_arch == "real"
    assert not get_preset("sam3").random
    assert get_preset("large").engine == "sam2"  # the default stays SAM 2 + Grounding DINO


def test_sam3_without_recorded_pins_refuses_to_download_and_says_why(tmp_path):
    preset = get_preset("sam3")
    assert missing_files(preset, tmp_path) == [tmp_path / "sam3" / "model.safetensors"]
    assert verify(preset, tmp_path) == [weights.SAM3_UNPINNED]
    with pytest.raises(ValueError, match="not download unverified weights"):
        weights.download(preset, tmp_path)


def test_sam3_with_pins_fetches_from_the_pinned_revision_with_the_token(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "SAM3_REVISION", "0" * 40)
    monkeypatch.setattr(weights, "_SAM3_FILES", {"model.safetensors": ("a" * 64, 10), "config.json": ("b" * 64, 2)})
    preset = get_preset("sam3")
    assert [f.path for f in preset.files] == ["sam3/config.json", "sam3/model.safetensors"]
    assert all(f.url.startswith(f"{weights.HF}/facebook/sam3/resolve/{'0' * 40}/") for f in preset.files)
    assert missing_files(preset, tmp_path) == [tmp_path / f.path for f in preset.files]
    seen = {}

    class Denied:
        status_code = 401

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake_get(url, **kwargs):
        seen.update(kwargs.get("headers") or {})
        return Denied()

    monkeypatch.setattr(requests, "get", fake_get)
    with pytest.raises(ValueError, match=r"gated.*HF_TOKEN is not set"):
        weights.download(preset, tmp_path)
    monkeypatch.setenv("HF_TOKEN", "hf_test")  # the name Hugging Face's own tools read: Settings reads it too
    with pytest.raises(ValueError, match="HTTP 401: the repository is gated"):
        weights.download(preset, tmp_path, token=Settings().hf_token)
    assert seen == {"Authorization": "Bearer hf_test"}
    assert not list(tmp_path.rglob("*.part"))


def test_exemplar_fields_parse_and_conflict():
    ok = parse_body(JobRequest, {"image": "x", "exemplars": [[1, 2, 30, 40]], "negative_exemplars": "[5,5,9,9]"})
    ok.check(16, 8)
    assert ok.params().exemplars == [[1, 2, 30, 40]] and ok.params().negative_exemplars == [[5, 5, 9, 9]]
    with_text = parse_body(JobRequest, {"image": "x", "prompt": ["cat", "dog"], "exemplars": [[1, 2, 30, 40]],
                                        "box_threshold": 0.2})
    with_text.check(16, 8)
    assert with_text.params().prompt == ["cat", "dog"] and with_text.params().box_threshold == 0.2
    negative_with_text = parse_body(JobRequest, {"image": "x", "prompt": "cat", "negative_exemplars": [[1, 2, 3, 4]]})
    negative_with_text.check(16, 8)
    for extra in ({"coordinates": [3, 4]}, {"boxes": [[1, 1, 5, 5]]}, {"remove_coordinates": [3, 4]},
                  {"multimask": True}):
        req = parse_body(JobRequest, {"image": "x", "exemplars": [[1, 2, 30, 40]], **extra})
        with pytest.raises(InvalidRequest, match=f"'{next(iter(extra))}' cannot be combined with 'exemplars'"):
            req.check(16, 8)
    with pytest.raises(InvalidRequest, match="need a 'prompt' or positive 'exemplars'"):
        parse_body(JobRequest, {"image": "x", "negative_exemplars": [[1, 2, 3, 4]]}).check(16, 8)
    with pytest.raises(InvalidRequest, match="at most 2 boxes"):
        parse_body(JobRequest, {"image": "x", "exemplars": [[1, 2, 3, 4]] * 3}).check(16, 2)
    with pytest.raises(InvalidRequest, match="'exemplars' cannot be combined with 'everything'"):
        parse_body(JobRequest, {"image": "x", "everything": True, "exemplars": [[1, 2, 3, 4]]}).check(16, 8)


def test_check_prompts_names_the_presets_that_can():
    check_prompts(Params(**{"exemplars": [[1, 2, 3, 4]]}), "tiny-random-sam3")
    check_prompts(Params(**{"everything": {}}), "large")
    with pytest.raises(InvalidRequest, match=r"need a SAM 3 preset \(sam3, tiny-random-sam3, random-sam3\).*'large'"):
        check_prompts(Params(**{"exemplars": [[1, 2, 3, 4]]}), "large")
    with pytest.raises(InvalidRequest, match="'negative_exemplars' need a SAM 3 preset"):
        check_prompts(Params(**{"prompt": "cat", "negative_exemplars": [[1, 2, 3, 4]]}), "tiny-random")
    with pytest.raises(InvalidRequest, match="'everything' needs a SAM 2 preset .*large.*'sam3'"):
        check_prompts(Params(**{"everything": {}}), "sam3")


def _gateway(redis_url, rclient, tmp_path, preset):
    client = make_app(redis_url, tmp_path, models=preset).test_client()
    key = KeyStore(rclient).create(CREDITS, "sam3")
    workers.announce(rclient, "sam3@host")
    return client, key


def _refused(r, rclient, key, *words):
    body = r.get_json()
    assert r.status_code == 400 and body["error"]["code"] == "invalid_request", body
    for word in words:
        assert word in body["error"]["message"], body
    assert KeyStore(rclient).credits.balance(hash_key(key)) == CREDITS  # nothing charged
    assert not list(rclient.scan_iter(match=names.job("*")))


def test_gateway_refuses_exemplars_under_a_sam2_preset(redis_url, rclient, tmp_path):
    client, key = _gateway(redis_url, rclient, tmp_path, "tiny-random")
    r = client.post("/v1/jobs", json={"image": _png(), "exemplars": [[1, 2, 30, 40]]}, headers={"x-api-key": key})
    _refused(r, rclient, key, "'exemplars' need a SAM 3 preset", "sam3, tiny-random-sam3")
    r = client.post("/v1/batches", json={"items": [{"image": _png(), "prompt": "cat"},
                                                   {"image": _png(), "prompt": "cat", "exemplars": [[1, 2, 3, 4]]}]},
                    headers={"x-api-key": key})
    _refused(r, rclient, key, "SAM 3 preset")


def test_gateway_under_sam3_checks_exemplars_and_names_the_model(redis_url, rclient, tmp_path):
    client, key = _gateway(redis_url, rclient, tmp_path, "tiny-random-sam3")
    headers = {"x-api-key": key}
    r = client.post("/v1/jobs", json={"image": _png(), "exemplars": [[1, 2, 30, 40]], "coordinates": [3, 4]},
                    headers=headers)
    _refused(r, rclient, key, "'coordinates' cannot be combined with 'exemplars'")
    r = client.post("/v1/jobs", json={"image": _png(), "exemplars": [[1, 2, 300, 40]]}, headers=headers)
    _refused(r, rclient, key, "'exemplars' box", "outside the 64x48 image")
    r = client.post("/v1/jobs", json={"image": _png(), "everything": True}, headers=headers)
    _refused(r, rclient, key, "'everything' needs a SAM 2 preset")
    r = client.post("/v1/jobs", json={"image": _png(), "prompt": "cat", "exemplars": [[1, 2, 30, 40]]},
                    headers=headers)
    assert r.status_code == 202, r.get_json()
    job = r.get_json()
    assert job["model"] == "tiny-random-sam3"
    assert client.get(f"/v1/jobs/{job['id']}", headers=headers).get_json()["model"] == "tiny-random-sam3"
