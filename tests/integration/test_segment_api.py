"""The drop-in endpoint end to end: HTTP -> Redis -> Celery worker -> S3 -> back, on real photographs."""

from __future__ import annotations

import base64

import numpy as np
from PIL import Image

from harness.photos import ASTRONAUT_PNG, ROCKET_JPG, b64, jpeg_bytes, open_image
from tests.helpers import wait_for_job

ENDPOINT = "/v1/sam-v2-image"


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(open_image(data).convert("RGB"), dtype=float)


def test_hosted_api_example_with_a_prompt(stack, key):
    body = {"base64": False, "image": b64(ROCKET_JPG), "overlay_mask": True, "prompt": "boy"}
    r = stack.post(ENDPOINT, body, key)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    assert open_image(r.content).size == (640, 427)
    assert r.headers["x-remaining-credits"] == "9" and stack.balance(key) == 9
    job = stack.get(f"/v1/jobs/{r.headers['x-job-id']}", key).json()
    assert r.headers["x-objects-found"] == str(job["objects_found"]) == str(len(job["objects"]))
    assert r.headers["x-request-id"]


def test_coordinates_as_string_and_array_give_the_same_mask(stack, key):
    as_string = stack.post(ENDPOINT, {"image": b64(ROCKET_JPG), "coordinates": "[[320,200],[330,150]]"}, key)
    as_array = stack.post(ENDPOINT, {"image": b64(ROCKET_JPG), "coordinates": [[320, 200], [330, 150]]}, key)
    assert as_string.status_code == as_array.status_code == 200
    assert as_string.headers["x-objects-found"] == "1"
    assert np.abs(_pixels(as_string.content) - _pixels(as_array.content)).max() == 0  # deterministic models
    original = _pixels(jpeg_bytes(Image.open(ROCKET_JPG), quality=90))
    assert np.abs(_pixels(as_string.content) - original).mean() > 1  # the overlay changed the picture
    assert stack.balance(key) == 8


def test_negative_points_change_the_result(stack, key):
    plain = stack.post(ENDPOINT, {"image": b64(ROCKET_JPG), "coordinates": "[320,200]", "overlay_mask": False}, key)
    minus = stack.post(ENDPOINT, {"image": b64(ROCKET_JPG), "coordinates": "[320,200]", "overlay_mask": False,
                                  "remove_coordinates": "[[100,100],[500,300]]"}, key)
    assert plain.status_code == minus.status_code == 200
    assert not np.array_equal(_pixels(plain.content), _pixels(minus.content))


def test_overlay_false_returns_the_mask_itself(stack, key):
    r = stack.post(ENDPOINT, {"image": b64(ROCKET_JPG), "coordinates": [320, 200], "overlay_mask": "false"}, key)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    mask = _pixels(r.content)[..., 0]
    assert mask.shape == (427, 640)
    # A black/white mask: nearly every pixel near 0 or 255 (JPEG blurs only the edges).
    assert np.mean((mask < 40) | (mask > 215)) > 0.97
    assert (mask > 215).any()


def test_base64_true_returns_json(stack, key):
    r = stack.post(ENDPOINT, {"image": b64(ASTRONAUT_PNG), "coordinates": "[256,200]", "base64": True}, key)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    image = open_image(base64.b64decode(r.json()["image"]))
    assert image.format == "JPEG" and image.size == (512, 512)


def test_data_uri_png_and_string_booleans(stack, key):
    uri = "data:image/png;base64," + b64(ASTRONAUT_PNG)
    r = stack.post(ENDPOINT, {"image": uri, "coordinates": "[256,200]", "base64": "0", "overlay_mask": "1"}, key)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert open_image(r.content).size == (512, 512)


def test_exif_rotated_photo_keeps_displayed_size_and_coordinates(stack, key):
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed 427 wide, 640 high
    data = jpeg_bytes(Image.open(ROCKET_JPG), exif=exif, quality=95)
    body = {"image": base64.b64encode(data).decode(), "coordinates": "[400,600]", "overlay_mask": False}
    r = stack.post(ENDPOINT, body, key)  # (400, 600) only exists in the displayed orientation
    assert r.status_code == 200, r.text
    assert open_image(r.content).size == (427, 640)


def test_image_url_is_fetched_by_the_worker(stack, key, image_host):
    r = stack.post(ENDPOINT, {"image": f"http://{image_host}/photos/rocket.jpg", "coordinates": [320, 200]}, key)
    assert r.status_code == 200, r.text
    assert open_image(r.content).size == (640, 427)
    assert stack.balance(key) == 9


def test_json_without_content_type_and_multipart_upload(stack, key):
    import json

    import requests

    body = json.dumps({"image": b64(ROCKET_JPG), "coordinates": "[320,200]"})
    r = requests.post(stack.url + ENDPOINT, data=body, headers={"x-api-key": key, "content-type": "text/plain"})
    assert r.status_code == 200 and open_image(r.content).size == (640, 427)
    with ROCKET_JPG.open("rb") as fh:
        r = requests.post(stack.url + ENDPOINT, headers={"x-api-key": key},
                          files={"image": ("rocket.jpg", fh, "image/jpeg")},
                          data={"coordinates": "[320,200]", "overlay_mask": "false"})
    assert r.status_code == 200, r.text
    assert open_image(r.content).size == (640, 427)
    assert stack.balance(key) == 8


def test_a_call_that_outlives_the_sync_timeout_answers_202_and_keeps_running(impatient_stack):

    st = impatient_stack
    key = st.new_key(3)
    y, x = np.mgrid[0:4000, 0:6000]  # 24 megapixels
    big = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    body = {"image": base64.b64encode(jpeg_bytes(Image.fromarray(big), quality=80)).decode(),
            "coordinates": "[3000,2000]"}
    with st.paused("wi"):  # the worker takes nothing for longer than the 1 s sync timeout (it is faster than that)
        r = st.post(ENDPOINT, body, key)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running") and job["urls"]["self"] == r.headers["Location"]
    assert r.headers["x-job-id"] == job["id"]
    final = wait_for_job(st, key, job["id"], ("succeeded",), 120, "the job to finish")
    result = st.get(f"/v1/jobs/{final['id']}/result", key)
    assert result.status_code == 200 and open_image(result.content).size == (6000, 4000)
    assert st.balance(key) == 2
