"""A corpus of bad input against every field of both submit endpoints: each a clear 4xx JSON error that names
the problem, never a 5xx, no credit taken, no job left; and the odd-but-valid inputs that must work.

The gateway reads only an image's header (the worker decodes it anyway): pixel data cut short after a whole
header is found by the worker, and the job fails with the same 422, refunded (tests/integration/test_errors.py).
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from harness.photos import ROCKET_JPG
from shared import names, workers
from shared.keys import KeyStore, hash_key
from tests.unit.gateway_app import make_app

CREDITS = 1000


def _encode(img: Image.Image, fmt: str, **save: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


RGB = Image.new("RGB", (64, 48), (10, 200, 90))
JPEG = ROCKET_JPG.read_bytes()
PNG = _encode(RGB, "PNG")
WEBP = _encode(RGB, "WEBP")
FRAMES = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0))]
ANIMATED_GIF = _encode(FRAMES[0], "GIF", save_all=True, append_images=FRAMES[1:])
ANIMATED_WEBP = _encode(FRAMES[0], "WEBP", save_all=True, append_images=FRAMES[1:])
BOMB = _encode(Image.new("1", (20_000, 20_000)), "PNG")  # 400 megapixels in a few tens of kilobytes
CORRUPT_PNG = PNG[:40] + bytes(b ^ 0x5A for b in PNG[40:])


def _noise(size: int) -> bytes:
    return _encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, (size, size, 3), dtype=np.uint8)), "PNG")


IMAGES = {  # name -> (bytes, status, code, words the message must contain)
    "jpeg cut inside its header": (JPEG[:300], 422, "undecodable_image", "decoded"),
    "corrupt jpeg": (JPEG[:2] + bytes(range(256)) * 40, 422, "undecodable_image", "decoded"),
    "png cut inside its header": (PNG[:20], 422, "undecodable_image", "decoded"),
    "corrupt png": (CORRUPT_PNG, 422, "undecodable_image", "decoded"),
    "truncated webp": (WEBP[: len(WEBP) // 2], 422, "undecodable_image", "decoded"),
    "text": (b"this is not an image at all", 422, "undecodable_image", "decoded"),
    "decompression bomb": (BOMB, 413, "too_large", "pixels"),
    "over the image byte limit": (_noise(900), 413, "too_large", "bytes"),  # 2.4 MB image, 3.2 MB body
    "over the body limit": (_noise(1200), 413, "too_large", "bytes"),  # refused before the body is read
    "extreme aspect (wide)": (_encode(Image.new("RGB", (4000, 2)), "PNG"), 422, "unsupported_image", "4000x2"),
    "extreme aspect (tall)": (_encode(Image.new("RGB", (3, 1000)), "PNG"), 422, "unsupported_image", "3x1000"),
    "animated gif": (ANIMATED_GIF, 422, "undecodable_image", "GIF"),
    "animated webp": (ANIMATED_WEBP, 422, "unsupported_image", "animated"),
    "bmp": (_encode(RGB, "BMP"), 422, "undecodable_image", "BMP"),
}

GOOD_IMAGES = {
    "16-bit greyscale png": _encode(Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16)),
                                    "PNG"),
    "cmyk jpeg": _encode(RGB.convert("CMYK"), "JPEG"),
    "palette png": _encode(RGB.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
    "greyscale+alpha png": _encode(RGB.convert("LA"), "PNG"),
    "rgba webp": _encode(RGB.convert("RGBA"), "WEBP"),
    "jpeg": JPEG,
}
GOOD_TEXT = {
    "base64 with line breaks": "\n".join(_b64(PNG)[i:i + 76] for i in range(0, len(_b64(PNG)), 76)),
    "base64 with spaces and tabs": " \t".join(_b64(PNG)[i:i + 10] for i in range(0, len(_b64(PNG)), 10)),
    "data uri": "data:image/png;base64," + _b64(PNG),
    "data uri with line breaks": "data:image/png;base64,\n" + "\r\n".join(
        _b64(PNG)[i:i + 64] for i in range(0, len(_b64(PNG)), 64)),
    "urlsafe base64 unpadded": base64.urlsafe_b64encode(PNG).decode().rstrip("="),
}

OK = {"image": _b64(PNG), "coordinates": "[10,10]"}
# (endpoint, body patch) -> the field the message must name; "image" etc. for wrong JSON types of every field.
WRONG_TYPES = [
    ("image", 123), ("image", None), ("image", ["a"]), ("image", {"b64": "x"}), ("image", ""), ("image", "   "),
    ("image", "%%%not base64%%%"), ("image", "ftp://example.com/a.jpg"),
    ("prompt", 5), ("prompt", {"a": 1}), ("prompt", "x" * 5000),
    ("coordinates", "abc"), ("coordinates", 5), ("coordinates", {"x": 1}), ("coordinates", [[1, 2, 3]]),
    ("coordinates", [["a", "b"]]), ("coordinates", "[[1e999,1]]"), ("coordinates", [[-5, 1]]),
    ("coordinates", [[5000, 10]]), ("coordinates", [[1, 1]] * 100),
    ("remove_coordinates", "nope"), ("remove_coordinates", 7),
    ("overlay_mask", "maybe"), ("overlay_mask", [True]), ("overlay_mask", 2),
    ("base64", {"yes": 1}), ("base64", "perhaps"),
]
JOB_ONLY = [
    ("boxes", "x"), ("boxes", [[1, 2, 3]]), ("boxes", [[30, 30, 10, 10]]), ("boxes", 4),
    ("point_labels", "x"), ("point_labels", [2]), ("point_labels", [True]), ("point_labels", [1, 1, 1]),
    ("multimask", "sometimes"), ("multimask", [1]), ("box_threshold", 2), ("box_threshold", "high"),
    ("text_threshold", -1), ("max_objects", 0), ("max_objects", "many"), ("max_objects", 10_000),
    ("outputs", 5), ("outputs", ["nope"]), ("outputs", []), ("polygons", "often"), ("metadata", "str"),
    ("metadata", [1, 2]), ("priority", "urgent"), ("priority", 5), ("webhook_url", 5), ("webhook_url", ""),
    ("webhook_events", ["exploded"]), ("webhook_events", "completed!"), ("surprise", 1),
]


@pytest.fixture
def gw(redis_url, rclient, tmp_path):
    app = make_app(redis_url, tmp_path, max_points=64)
    key = KeyStore(rclient).create(CREDITS, "corpus")
    workers.announce(rclient, "corpus@host")  # the drop-in checks for a live worker before accepting
    return app.test_client(), key, rclient


def _assert_refused(response, status, code, words, rclient, key):
    body = response.get_json(silent=True)
    assert response.status_code == status, (response.status_code, response.data[:300])
    assert body and set(body) == {"error"} and body["error"]["code"] == code, body
    for word in words if isinstance(words, tuple) else (words,):
        assert word.lower() in body["error"]["message"].lower(), body
    assert KeyStore(rclient).credits.balance(hash_key(key)) == CREDITS  # nothing charged
    assert not list(rclient.scan_iter(match=names.job("*")))  # no job made
    assert not list(rclient.scan_iter(match=names.hold("*")))


@pytest.mark.parametrize("endpoint", ["/v1/jobs", "/v1/sam-v2-image"])
@pytest.mark.parametrize("case", list(IMAGES))
def test_bad_images(gw, case, endpoint):
    client, key, rclient = gw
    data, status, code, words = IMAGES[case]
    r = client.post(endpoint, json={"image": _b64(data), "coordinates": "[1,1]"}, headers={"x-api-key": key})
    _assert_refused(r, status, code, words, rclient, key)


@pytest.mark.parametrize("endpoint", ["/v1/jobs", "/v1/sam-v2-image"])
@pytest.mark.parametrize(("field", "value"), WRONG_TYPES)
def test_wrong_values_of_every_drop_in_field_name_the_field(gw, field, value, endpoint):
    client, key, rclient = gw
    r = client.post(endpoint, json={**OK, field: value}, headers={"x-api-key": key})
    _assert_refused(r, 400, "invalid_request", f"'{field}'", rclient, key)  # the message quotes the field


@pytest.mark.parametrize(("field", "value"), JOB_ONLY)
def test_wrong_values_of_every_job_field_name_the_field(gw, field, value):
    client, key, rclient = gw
    base = {**OK, "prompt": "a dog"} if field in ("box_threshold", "text_threshold", "max_objects") else OK
    r = client.post("/v1/jobs", json={**base, field: value}, headers={"x-api-key": key})
    _assert_refused(r, 400, "invalid_request", field, rclient, key)


BODIES = {  # raw bodies and content types
    "empty": (b"", "application/json", "empty"),
    "not json": (b"image=abc&coordinates=1", "application/json", "json"),
    "json array": (b"[1, 2, 3]", "application/json", "object"),
    "json string": (b'"hello"', "application/json", "object"),
    "json null": (b"null", "application/json", "json"),
    "non-utf-8": (b'{"image": "\xff\xfe\xfd", "coordinates": "[1,1]"}', "application/json", "json"),
    "latin-1 declared": ('{"image": "é"}'.encode("latin-1"), "application/json; charset=latin-1", "json"),
    "deeply nested (parser limit)": (b'{"metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json",
                                     "nest"),
    "deeply nested (moderate)": (json.dumps({**OK, "metadata": {"a": json.loads("[" * 200 + "]" * 200)}}).encode(),
                                 "application/json", "nest"),
    "a jpeg as the body": (JPEG, "image/jpeg", "json"),
    "xml": (b"<image>abc</image>", "application/xml", "json"),
    "form without image": (b"coordinates=%5B1%2C1%5D", "application/x-www-form-urlencoded", "image"),
}


@pytest.mark.parametrize("endpoint", ["/v1/jobs", "/v1/sam-v2-image"])
@pytest.mark.parametrize("case", list(BODIES))
def test_malformed_bodies_and_wrong_content_types(gw, case, endpoint):
    client, key, rclient = gw
    data, content_type, words = BODIES[case]
    r = client.post(endpoint, data=data, content_type=content_type, headers={"x-api-key": key})
    _assert_refused(r, 400, "invalid_request", words, rclient, key)


def test_unknown_fields_are_ignored_by_the_drop_in_and_refused_by_jobs(gw):
    client, key, rclient = gw
    r = client.post("/v1/jobs", json={**OK, "colour": "red"}, headers={"x-api-key": key})
    _assert_refused(r, 400, "invalid_request", ("colour", "unknown field"), rclient, key)
    r = client.post("/v1/sam-v2-image", json={**OK, "colour": "red"}, headers={"x-api-key": key})
    assert r.status_code == 202  # accepted (no worker here: still running after the sync timeout)


@pytest.mark.parametrize("case", list(GOOD_IMAGES) + list(GOOD_TEXT))
def test_odd_but_valid_images_and_encodings_are_accepted(gw, case):
    client, key, rclient = gw
    image = GOOD_TEXT[case] if case in GOOD_TEXT else _b64(GOOD_IMAGES[case])
    r = client.post("/v1/jobs", json={"image": image, "coordinates": "[5,5]"}, headers={"x-api-key": key})
    assert r.status_code == 202, r.get_json()
    assert KeyStore(rclient).credits.balance(hash_key(key)) == CREDITS - 1


def test_the_service_is_healthy_after_the_whole_corpus(gw):
    client, key, _ = gw
    for data, *_ in IMAGES.values():
        client.post("/v1/jobs", json={"image": _b64(data), "coordinates": "[1,1]"}, headers={"x-api-key": key})
    for data, content_type, _ in BODIES.values():
        client.post("/v1/jobs", data=data, content_type=content_type, headers={"x-api-key": key})
    assert client.get("/healthz").status_code == 200
    assert client.post("/v1/jobs", json=OK, headers={"x-api-key": key}).status_code == 202
