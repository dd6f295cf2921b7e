"""Every bounded request field, through the routes in-process on the real Redis: at its bound it passes, one
over is a 400 `invalid_request` naming the field and the limit, with nothing charged and no job or batch made.

The bounds are shared/schemas.py's constants (docs/API.md, "Request bounds"); bench/footprint.py measures what one
accepted job weighs in Redis with every field at them.
"""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from gateway.openapi import openapi_document
from shared import names, workers
from shared.keys import KeyStore, hash_key
from shared.schemas import (
    ARRAY_TEXT_MAX_CHARS,
    BATCH_METADATA_MAX_BYTES,
    BOOL_TEXT_MAX_CHARS,
    IDEMPOTENCY_KEY_MAX_CHARS,
    IMAGE_URL_MAX_BYTES,
    LIST_MAX_ITEMS,
    METADATA_MAX_BYTES,
    METADATA_MAX_DEPTH,
    METADATA_MAX_KEYS,
    OUTPUTS_TEXT_MAX_CHARS,
    PROMPT_MAX_CHARS,
    PROMPT_MAX_PHRASES,
    WEBHOOK_URL_MAX_BYTES,
)
from tests.unit.gateway_app import make_app

CREDITS = 1000
_buf = io.BytesIO()
Image.new("RGB", (64, 48), (10, 200, 90)).save(_buf, "PNG")
PNG = base64.b64encode(_buf.getvalue()).decode()
CLICK = {"image": PNG, "coordinates": "[10,10]"}
TEXT = {"image": PNG, "prompt": "a dog"}
PUBLIC = "https://93.184.216.34/"  # a public address literal: the URL guard passes it without DNS


def _size(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def metadata_of(size: int, char: str = "x") -> dict:
    """{"k": "xxx..."} of exactly `size` bytes as compact UTF-8 JSON (char: 1 or 2 UTF-8 bytes, then ASCII)."""
    room = size - _size({"k": ""})
    width = len(char.encode())
    return {"k": char * (room // width) + "x" * (room % width)}


def padded(text: str, length: int) -> str:
    """`text` followed by spaces up to `length` characters (still the same value once parsed and trimmed)."""
    return text + " " * (length - len(text))


def url_of(size: int) -> str:
    return PUBLIC + "a" * (size - len(PUBLIC))


def nested(depth: int) -> dict:
    """Metadata whose deepest container is at level `depth` (the metadata object is level 1)."""
    value: object = [1]
    for _ in range(depth - 2):
        value = {"n": value}
    return {"n": value}


ONE_KEY_PER_LEVEL = {"a": {f"k{i}": 1 for i in range(METADATA_MAX_KEYS - 1)}}  # 1 + 63 keys = 64 in all

# name -> (base body, field, value at the bound, value one over, words the refusal must hold)
CASES = {
    "metadata bytes": (CLICK, "metadata", metadata_of(METADATA_MAX_BYTES), metadata_of(METADATA_MAX_BYTES + 1),
                       (f"{METADATA_MAX_BYTES + 1} bytes", str(METADATA_MAX_BYTES))),
    "metadata bytes (2-byte UTF-8)": (CLICK, "metadata", metadata_of(METADATA_MAX_BYTES, "é"),
                                      metadata_of(METADATA_MAX_BYTES + 1, "é"),
                                      (f"{METADATA_MAX_BYTES + 1} bytes", str(METADATA_MAX_BYTES))),
    "metadata keys at every level": (CLICK, "metadata", ONE_KEY_PER_LEVEL,
                                     {**ONE_KEY_PER_LEVEL, "one_more": True},
                                     (f"{METADATA_MAX_KEYS + 1} keys", f"limit is {METADATA_MAX_KEYS}")),
    "metadata nesting": (CLICK, "metadata", nested(METADATA_MAX_DEPTH), nested(METADATA_MAX_DEPTH + 1),
                         (f"{METADATA_MAX_DEPTH + 1} levels", f"limit is {METADATA_MAX_DEPTH}")),
    "webhook_url": (CLICK, "webhook_url", url_of(WEBHOOK_URL_MAX_BYTES), url_of(WEBHOOK_URL_MAX_BYTES + 1),
                    (f"{WEBHOOK_URL_MAX_BYTES + 1} bytes", str(WEBHOOK_URL_MAX_BYTES))),
    "image url": (CLICK, "image", url_of(IMAGE_URL_MAX_BYTES), url_of(IMAGE_URL_MAX_BYTES + 1),
                  (f"{IMAGE_URL_MAX_BYTES + 1} bytes", str(IMAGE_URL_MAX_BYTES))),
    "prompt": (TEXT, "prompt", "d" * PROMPT_MAX_CHARS, "d" * (PROMPT_MAX_CHARS + 1),
               (f"{PROMPT_MAX_CHARS + 1} characters", str(PROMPT_MAX_CHARS))),
    "prompt counted before trimming": (TEXT, "prompt", padded("dog", PROMPT_MAX_CHARS),
                                       padded("dog", PROMPT_MAX_CHARS + 1), (str(PROMPT_MAX_CHARS),)),
    "prompt phrases": (TEXT, "prompt", ["dog"] * PROMPT_MAX_PHRASES, ["dog"] * (PROMPT_MAX_PHRASES + 1),
                       (f"{PROMPT_MAX_PHRASES + 1} phrases", str(PROMPT_MAX_PHRASES))),
    "prompt phrases' characters together": (TEXT, "prompt", ["d" * 500, "d" * (PROMPT_MAX_CHARS - 500)],
                                            ["d" * 500, "d" * (PROMPT_MAX_CHARS - 499)],
                                            (f"{PROMPT_MAX_CHARS + 1} characters", str(PROMPT_MAX_CHARS))),
    "coordinates as text": (CLICK, "coordinates", padded("[10,10]", ARRAY_TEXT_MAX_CHARS),
                            padded("[10,10]", ARRAY_TEXT_MAX_CHARS + 1), (str(ARRAY_TEXT_MAX_CHARS),)),
    "remove_coordinates as text": ({**CLICK, "remove_coordinates": "[20,20]"}, "remove_coordinates",
                                   padded("[20,20]", ARRAY_TEXT_MAX_CHARS), padded("[20,20]", ARRAY_TEXT_MAX_CHARS + 1),
                                   (str(ARRAY_TEXT_MAX_CHARS),)),
    "point_labels as text": (CLICK, "point_labels", padded("[1]", ARRAY_TEXT_MAX_CHARS),
                             padded("[1]", ARRAY_TEXT_MAX_CHARS + 1), (str(ARRAY_TEXT_MAX_CHARS),)),
    "boxes as text": ({"image": PNG}, "boxes", padded("[1,1,9,9]", ARRAY_TEXT_MAX_CHARS),
                      padded("[1,1,9,9]", ARRAY_TEXT_MAX_CHARS + 1), (str(ARRAY_TEXT_MAX_CHARS),)),
    "outputs as text": (CLICK, "outputs", padded("json", OUTPUTS_TEXT_MAX_CHARS),
                        padded("json", OUTPUTS_TEXT_MAX_CHARS + 1), (str(OUTPUTS_TEXT_MAX_CHARS),)),
    "outputs as a list": (CLICK, "outputs", ["json"] * LIST_MAX_ITEMS, ["json"] * (LIST_MAX_ITEMS + 1),
                          (f"{LIST_MAX_ITEMS + 1} entries", str(LIST_MAX_ITEMS))),
    "webhook_events": (CLICK, "webhook_events", ["completed"] * LIST_MAX_ITEMS, ["completed"] * (LIST_MAX_ITEMS + 1),
                       (str(LIST_MAX_ITEMS),)),
    "overlay_mask as text": (CLICK, "overlay_mask", padded("true", BOOL_TEXT_MAX_CHARS),
                             padded("true", BOOL_TEXT_MAX_CHARS + 1), (str(BOOL_TEXT_MAX_CHARS),)),
    "polygons as text": (CLICK, "polygons", padded("yes", BOOL_TEXT_MAX_CHARS),
                         padded("yes", BOOL_TEXT_MAX_CHARS + 1), (str(BOOL_TEXT_MAX_CHARS),)),
    "multimask as text": (CLICK, "multimask", padded("all", BOOL_TEXT_MAX_CHARS),
                          padded("all", BOOL_TEXT_MAX_CHARS + 1), (str(BOOL_TEXT_MAX_CHARS),)),
}


@pytest.fixture
def gw(redis_url, rclient, tmp_path):
    app = make_app(redis_url, tmp_path)
    key = KeyStore(rclient).create(CREDITS, "bounds")
    workers.announce(rclient, "bounds@host")  # the drop-in checks for a live worker before accepting
    return app.test_client(), key, rclient


def _post(client, key, path, body, **headers):
    return client.post(path, json=body, headers={"x-api-key": key, **headers})


def _assert_refused(response, field, words, rclient, key):
    body = response.get_json(silent=True)
    assert response.status_code == 400, (response.status_code, response.data[:300])
    assert body and body["error"]["code"] == "invalid_request", body
    message = body["error"]["message"]
    assert f"'{field}'" in message, message
    for word in words:
        assert word in message, message
    assert KeyStore(rclient).credits.balance(hash_key(key)) == CREDITS  # nothing charged
    for pattern in (names.job("*"), names.hold("*"), names.batch("*"), names.params("*")):
        assert not list(rclient.scan_iter(match=pattern)), pattern  # nothing made


def _assert_accepted(response, rclient, key, jobs=1):
    assert response.status_code == 202, (response.status_code, response.data[:300])
    assert KeyStore(rclient).credits.balance(hash_key(key)) == CREDITS - jobs


@pytest.mark.parametrize("case", list(CASES))
def test_a_job_field_at_its_bound_is_accepted(gw, case):
    client, key, rclient = gw
    base, field, at_bound, _, _ = CASES[case]
    _assert_accepted(_post(client, key, "/v1/jobs", {**base, field: at_bound}), rclient, key)


@pytest.mark.parametrize("case", list(CASES))
def test_a_job_field_one_over_its_bound_is_a_400_naming_field_and_limit(gw, case):
    client, key, rclient = gw
    base, field, _, over, words = CASES[case]
    _assert_refused(_post(client, key, "/v1/jobs", {**base, field: over}), field, words, rclient, key)


@pytest.mark.parametrize("case", list(CASES))
def test_a_batch_item_over_a_bound_is_named_with_its_index(gw, case):
    client, key, rclient = gw
    base, field, at_bound, over, words = CASES[case]
    items = [{**base, field: at_bound}, CLICK, {**base, field: over}]
    r = _post(client, key, "/v1/batches", {"items": items})
    _assert_refused(r, f"items[2].{field}", words, rclient, key)


def test_a_batch_with_every_item_at_its_bounds_is_accepted(gw):
    client, key, rclient = gw
    items = [{**base, field: at_bound} for base, field, at_bound, _, _ in CASES.values()]
    r = _post(client, key, "/v1/batches", {"items": items, "metadata": metadata_of(BATCH_METADATA_MAX_BYTES),
                                           "webhook_url": url_of(WEBHOOK_URL_MAX_BYTES)})
    _assert_accepted(r, rclient, key, jobs=len(items))


@pytest.mark.parametrize(("field", "at_bound", "over", "words"), [
    # A batch's own metadata is stored three times (batch hash, idempotent answer, the view's copy): 4 KiB, not 16,
    # keeps a one-item batch within 64 KiB of Redis (bench/footprint.py).
    ("metadata", metadata_of(BATCH_METADATA_MAX_BYTES), metadata_of(BATCH_METADATA_MAX_BYTES + 1),
     (f"{BATCH_METADATA_MAX_BYTES + 1} bytes", f"limit is {BATCH_METADATA_MAX_BYTES}")),
    ("metadata", nested(METADATA_MAX_DEPTH), nested(METADATA_MAX_DEPTH + 1), (str(METADATA_MAX_DEPTH),)),
    ("metadata", ONE_KEY_PER_LEVEL, {**ONE_KEY_PER_LEVEL, "x": 1}, (str(METADATA_MAX_KEYS),)),
    ("webhook_url", url_of(WEBHOOK_URL_MAX_BYTES), url_of(WEBHOOK_URL_MAX_BYTES + 1), (str(WEBHOOK_URL_MAX_BYTES),)),
])
def test_the_batch_fields_have_their_bounds(gw, field, at_bound, over, words):
    client, key, rclient = gw
    _assert_refused(_post(client, key, "/v1/batches", {"items": [CLICK], field: over}), field, words, rclient, key)
    _assert_accepted(_post(client, key, "/v1/batches", {"items": [CLICK], field: at_bound}), rclient, key)


def test_the_drop_in_prompt_has_the_same_bound(gw):
    client, key, rclient = gw
    r = _post(client, key, "/v1/sam-v2-image", {**TEXT, "prompt": "d" * (PROMPT_MAX_CHARS + 1)})
    _assert_refused(r, "prompt", (str(PROMPT_MAX_CHARS),), rclient, key)
    r = _post(client, key, "/v1/sam-v2-image", {**TEXT, "prompt": "d" * PROMPT_MAX_CHARS})
    _assert_accepted(r, rclient, key)  # no worker here: still running after the sync timeout


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/batches"])
def test_the_idempotency_key_header(gw, path):
    client, key, rclient = gw
    body = CLICK if path == "/v1/jobs" else {"items": [CLICK]}
    r = _post(client, key, path, body, **{"Idempotency-Key": "k" * (IDEMPOTENCY_KEY_MAX_CHARS + 1)})
    _assert_refused(r, "Idempotency-Key", (f"{IDEMPOTENCY_KEY_MAX_CHARS + 1} characters",
                                           str(IDEMPOTENCY_KEY_MAX_CHARS)), rclient, key)
    r = _post(client, key, path, body, **{"Idempotency-Key": "k" * IDEMPOTENCY_KEY_MAX_CHARS})
    _assert_accepted(r, rclient, key)


@pytest.mark.parametrize(("field", "raw"), [
    ("metadata", '{"k": "\\ud800"}'), ("metadata", '{"\\udfff": 1}'), ("prompt", '"dog \\ud83d"'),
    ("prompt", '["dog", "\\udc00"]'), ("webhook_url", f'"{PUBLIC}\\ud800"'),
])
def test_text_that_is_not_unicode_is_a_400_not_a_server_error(gw, field, raw):
    # Valid JSON (an escaped lone surrogate) that no UTF-8 store can hold.
    client, key, rclient = gw
    base = json.dumps(TEXT if field == "prompt" else CLICK)[:-1]
    r = client.post("/v1/jobs", data=f'{base}, "{field}": {raw}}}', content_type="application/json",
                    headers={"x-api-key": key})
    _assert_refused(r, field, ("surrogate",), rclient, key)


def test_metadata_is_stored_and_replayed_as_the_bytes_the_bound_counts(gw):
    # Stored as compact UTF-8 JSON: a 16 KiB metadata of 3- and 4-byte characters weighs 16 KiB in Redis, not
    # 2 or 3 times that as \\u escapes, and comes back unchanged (also from an idempotent replay).
    client, key, rclient = gw
    metadata = {"名前": "写真" * 1000, "emoji": "😀" * 1000, "nested": {"list": [1, 2.5, None, True, "é"]}}
    body = {**CLICK, "metadata": metadata}
    first = _post(client, key, "/v1/jobs", body, **{"Idempotency-Key": "utf-8"})
    _assert_accepted(first, rclient, key)
    job_id = first.get_json()["id"]
    stored = rclient.hget(names.job(job_id), "metadata")
    assert len(stored) == _size(metadata) and json.loads(stored) == metadata
    assert client.get(f"/v1/jobs/{job_id}", headers={"x-api-key": key}).get_json()["metadata"] == metadata
    again = _post(client, key, "/v1/jobs", body, **{"Idempotency-Key": "utf-8"})
    assert again.headers["Idempotent-Replayed"] == "true" and again.get_json() == first.get_json()
    own = {"名前": "写真" * 300, "emoji": "😀" * 300, "nested": {"list": [1, 2.5, None, True, "é"]}}  # <= 4 KiB
    r = _post(client, key, "/v1/batches", {"items": [body], "metadata": own})
    _assert_accepted(r, rclient, key, jobs=2)
    batch = client.get(f"/v1/batches/{r.get_json()['id']}", headers={"x-api-key": key}).get_json()
    assert batch["metadata"] == own
    item = r.get_json()["job_ids"][0]  # an item's metadata keeps the job's bound
    assert client.get(f"/v1/jobs/{item}", headers={"x-api-key": key}).get_json()["metadata"] == metadata


def test_webhook_events_are_stored_once_each(gw):
    client, key, rclient = gw
    r = _post(client, key, "/v1/jobs", {**CLICK, "webhook_url": PUBLIC, "webhook_events": ["started", "completed",
                                                                                            "started"] * 5})
    _assert_accepted(r, rclient, key)
    assert json.loads(rclient.hget(names.job(r.get_json()["id"]), "webhook_events")) == ["started", "completed"]


def test_the_openapi_document_states_the_bounds():
    schemas = openapi_document()["components"]["schemas"]
    job, batch = schemas["JobRequest"]["properties"], schemas["BatchRequest"]["properties"]
    assert {"maxLength": PROMPT_MAX_CHARS, "type": "string"} in job["prompt"]["anyOf"]
    assert any(s.get("maxItems") == PROMPT_MAX_PHRASES for s in job["prompt"]["anyOf"])
    assert schemas["SegmentRequest"]["properties"]["prompt"]["anyOf"][0]["maxLength"] == PROMPT_MAX_CHARS
    for props, max_bytes in ((job, METADATA_MAX_BYTES), (batch, BATCH_METADATA_MAX_BYTES)):
        assert props["webhook_url"]["anyOf"][0]["maxLength"] == WEBHOOK_URL_MAX_BYTES
        meta = props["metadata"]
        assert meta["anyOf"][0]["maxProperties"] == METADATA_MAX_KEYS
        assert f"at most {max_bytes} bytes" in meta["description"] and str(METADATA_MAX_DEPTH) in meta["description"]
    assert job["image"]["anyOf"][0]["maxLength"] == IMAGE_URL_MAX_BYTES
    assert job["coordinates"]["oneOf"][0]["maxLength"] == ARRAY_TEXT_MAX_CHARS
    assert job["outputs"]["anyOf"][0]["maxItems"] == LIST_MAX_ITEMS
    assert job["webhook_events"]["maxItems"] == LIST_MAX_ITEMS
    assert job["overlay_mask"]["oneOf"][2]["maxLength"] == BOOL_TEXT_MAX_CHARS
    idem = openapi_document()["paths"]["/v1/jobs"]["post"]["parameters"][0]
    assert idem["name"] == "Idempotency-Key" and idem["schema"]["maxLength"] == IDEMPOTENCY_KEY_MAX_CHARS


def _depth_of(schema: dict) -> int:
    """How many levels of containers a metadata schema admits (following its deepest branch)."""
    branches = schema.get("anyOf", [schema])
    inner = [b.get("additionalProperties") or b.get("items") for b in branches if b.get("type") in ("object", "array")]
    return 1 + max((_depth_of(i) for i in inner if isinstance(i, dict)), default=0) if inner else 0


def test_the_openapi_metadata_schema_nests_exactly_as_deep_as_the_server_allows():
    meta = openapi_document()["components"]["schemas"]["JobRequest"]["properties"]["metadata"]
    assert _depth_of(meta) == METADATA_MAX_DEPTH


def test_the_webhook_enable_url_has_the_webhook_url_bound(gw):
    client, key, _ = gw
    r = _post(client, key, "/v1/webhooks/enable", {"url": url_of(WEBHOOK_URL_MAX_BYTES + 1)})
    assert r.status_code == 400 and "'url'" in r.get_json()["error"]["message"], r.get_json()
    assert str(WEBHOOK_URL_MAX_BYTES) in r.get_json()["error"]["message"]
    assert _post(client, key, "/v1/webhooks/enable", {"url": url_of(WEBHOOK_URL_MAX_BYTES)}).status_code == 200
