"""Every error status of the contract, as JSON, and credits exact after each."""

from __future__ import annotations

import base64
import io

import pytest
import requests
from PIL import Image

from harness.photos import ROCKET_JPG, b64

ENDPOINT = "/v1/sam-v2-image"


def _assert_error(r: requests.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"]["code"] == code and body["error"]["message"]
    assert r.headers["x-request-id"]
    return body


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "sk_unknown"}, {"Authorization": "Bearer sk_unknown"},
                                     {"Authorization": "Basic abc"}])
def test_401_missing_or_unknown_key(stack, headers):
    r = requests.post(stack.url + ENDPOINT, json={"image": b64(ROCKET_JPG), "prompt": "boy"}, headers=headers)
    _assert_error(r, 401, "unauthorized")


def test_401_disabled_key_and_bearer_works(stack):
    from shared.keys import KeyStore, hash_key

    raw = stack.new_key(5)
    ok = stack.get("/v1/credits", None, headers={"Authorization": f"Bearer {raw}"})
    assert ok.status_code == 200 and ok.json()["credits"] == 5
    KeyStore(stack.redis).disable(hash_key(raw))
    body = _assert_error(stack.post(ENDPOINT, {"image": b64(ROCKET_JPG), "prompt": "boy"}, raw), 401, "unauthorized")
    assert "disabled" in body["error"]["message"]
    assert stack.balance(raw) == 5


def test_404_and_405_are_json(stack):
    _assert_error(requests.get(stack.url + "/v1/nothing-here"), 404, "not_found")
    r = requests.get(stack.url + ENDPOINT)
    _assert_error(r, 405, "method_not_allowed")
    assert "POST" in r.headers["Allow"]


def test_406_not_enough_credits_charges_and_enqueues_nothing(stack):
    raw = stack.new_key(0)
    jobs_before = stack.job_count()
    r = stack.post(ENDPOINT, {"image": b64(ROCKET_JPG), "prompt": "boy"}, raw)
    _assert_error(r, 406, "insufficient_credits")
    assert r.headers["x-remaining-credits"] == "0"
    assert stack.balance(raw) == 0 and stack.job_count() == jobs_before


@pytest.mark.parametrize(("body", "field"), [
    ({"prompt": "boy"}, "image"),
    ({"image": b64(ROCKET_JPG)}, "prompt"),
    ({"image": b64(ROCKET_JPG), "coordinates": "[834]"}, "coordinates"),
    ({"image": b64(ROCKET_JPG), "coordinates": "[[1,2],[3]]"}, "coordinates"),
    ({"image": b64(ROCKET_JPG), "coordinates": "[1, NaN]"}, "coordinates"),
    ({"image": b64(ROCKET_JPG), "coordinates": "[5000,10]"}, "coordinates"),
    ({"image": b64(ROCKET_JPG), "coordinates": "[10,10]", "remove_coordinates": "[10,5000]"}, "remove_coordinates"),
    ({"image": b64(ROCKET_JPG), "coordinates": "[10,10]", "overlay_mask": "sometimes"}, "overlay_mask"),
    ({"image": b64(ROCKET_JPG), "coordinates": "[10,10]", "base64": 7}, "base64"),
    ({"image": "%%%not-base64%%%", "prompt": "boy"}, "image"),
    ({"image": "ftp://example.com/a.jpg", "prompt": "boy"}, "image"),
])
def test_400_bad_fields_name_the_field_and_cost_nothing(stack, key, body, field):
    r = stack.post(ENDPOINT, body, key)
    err = _assert_error(r, 400, "invalid_request")
    assert field in err["error"]["message"]
    assert stack.balance(key) == 10 and r.headers["x-remaining-credits"] == "10"


def test_400_malformed_json_and_wrong_types(stack, key):
    for data in (b"{not json", b"[1,2]", b'"just a string"', b""):
        r = requests.post(stack.url + ENDPOINT, data=data, headers={"x-api-key": key,
                                                                   "content-type": "application/json"})
        _assert_error(r, 400, "invalid_request")
    assert stack.balance(key) == 10


@pytest.mark.parametrize("url", ["http://localhost:6379/x.jpg", "http://169.254.169.254/latest/meta-data",
                                 "http://10.0.0.1/a.jpg", "http://[::1]:80/a.jpg"])
def test_400_private_image_urls_are_refused(stack, key, url):
    _assert_error(stack.post(ENDPOINT, {"image": url, "prompt": "boy"}, key), 400, "url_not_allowed")
    assert stack.balance(key) == 10


def test_422_undecodable_images(stack, key):
    png = io.BytesIO()
    Image.new("RGB", (300, 200), "teal").save(png, "PNG")
    # Header-level garbage is refused by the gateway; pixel data cut short by the worker (the job fails, refunded).
    for data in (b"hello, not an image", ROCKET_JPG.read_bytes()[:5000], png.getvalue()[:-200]):
        r = stack.post(ENDPOINT, {"image": base64.b64encode(data).decode(), "prompt": "boy"}, key)
        _assert_error(r, 422, "undecodable_image")
    gif = io.BytesIO()
    Image.new("RGB", (10, 10)).save(gif, "GIF")
    r = stack.post(ENDPOINT, {"image": base64.b64encode(gif.getvalue()).decode(), "prompt": "boy"}, key)
    _assert_error(r, 422, "undecodable_image")
    assert stack.balance(key) == 10


def test_422_url_that_fails_is_refunded(stack, key, image_host):
    r = stack.post(ENDPOINT, {"image": f"http://{image_host}/photos/missing.jpg", "prompt": "boy"}, key)
    body = _assert_error(r, 422, "fetch_failed")
    assert "404" in body["error"]["message"]
    assert stack.balance(key) == 10  # charged at accept, refunded on failure


def test_413_too_many_bytes_or_pixels(stack, key):
    # The stack's limits: 2 MiB and 4 Mpx.
    huge = base64.b64encode(b"\xff" * (3 * 1024 * 1024)).decode()
    _assert_error(stack.post(ENDPOINT, {"image": huge, "prompt": "boy"}, key), 413, "too_large")
    big = io.BytesIO()
    Image.new("RGB", (2100, 2000), "white").save(big, "PNG")
    r = stack.post(ENDPOINT, {"image": base64.b64encode(big.getvalue()).decode(), "prompt": "boy"}, key)
    _assert_error(r, 413, "too_large")
    body = requests.post(stack.url + ENDPOINT, data=b"x" * (5 * 1024 * 1024),
                         headers={"x-api-key": key, "content-type": "application/json"})
    _assert_error(body, 413, "too_large")
    assert stack.balance(key) == 10
