"""Segment everything at the gateway: the option's forms and bounds, conflicts named, its own price, and a batch
mixing it with other items charged each item's own cost (in-process gateway, real Redis)."""

from __future__ import annotations

import base64

import pytest

from harness.photos import ROCKET_JPG
from shared import names
from shared.jobs import JobStore
from shared.keys import KeyStore, hash_key
from shared.schemas import JobRequest, parse_body
from tests.unit.gateway_app import make_app

IMAGE = base64.b64encode(ROCKET_JPG.read_bytes()).decode()


def test_true_is_every_default_and_an_object_its_options():
    params = parse_body(JobRequest, {"image": IMAGE, "everything": True}).params()
    assert params.everything == {"points_per_side": 32, "points_per_batch": 64, "pred_iou_thresh": 0.8,
                                    "stability_score_thresh": 0.95, "box_nms_thresh": 0.7, "min_area": 0,
                                    "multimask": True}
    assert params.model_fields_set == {"outputs", "overlay_mask", "everything"}  # no points, no prompt
    req = parse_body(JobRequest, {"image": IMAGE, "everything": {"points_per_side": 8, "min_area": 50,
                                                                 "max_objects": 7}})
    req.check(64)
    assert req.params().everything["points_per_side"] == 8 and req.params().everything["max_objects"] == 7
    assert parse_body(JobRequest, {"image": IMAGE, "prompt": "cat", "everything": False}).params().everything is None


@pytest.mark.parametrize("field,value", [
    ("prompt", "car"), ("coordinates", [[10, 10]]), ("boxes", [[1, 1, 20, 20]]), ("remove_coordinates", [[5, 5]]),
    ("multimask", True), ("box_threshold", 0.3),
])
def test_everything_with_a_prompt_of_its_own_is_a_400_naming_the_field(field, value):
    req = parse_body(JobRequest, {"image": IMAGE, "everything": True, field: value})
    with pytest.raises(Exception) as err:
        req.check(64)
    assert err.value.status == 400 and f"'{field}'" in err.value.message and "everything" in err.value.message


@pytest.mark.parametrize("options,field", [
    ({"points_per_side": 3}, "everything.points_per_side"), ({"points_per_side": 65}, "everything.points_per_side"),
    ({"points_per_batch": 0}, "everything.points_per_batch"), ({"pred_iou_thresh": 1.5}, "everything.pred_iou_thresh"),
    ({"stability_score_thresh": -0.1}, "everything.stability_score_thresh"), ({"min_area": -1}, "everything.min_area"),
    ({"max_objects": 0}, "everything.max_objects"), ({"colour": "red"}, "everything.colour"),
])
def test_out_of_range_or_unknown_options_are_a_400_naming_them(options, field):
    with pytest.raises(Exception) as err:
        parse_body(JobRequest, {"image": IMAGE, "everything": options})
    assert err.value.status == 400 and f"'{field}'" in err.value.message


@pytest.mark.parametrize("value", [1, "yes", [True], 3.5])
def test_everything_is_true_false_or_an_object(value):
    with pytest.raises(Exception) as err:
        parse_body(JobRequest, {"image": IMAGE, "everything": value})
    assert err.value.status == 400 and "'everything'" in err.value.message


@pytest.fixture
def gw(redis_url, rclient, tmp_path):
    app = make_app(redis_url, tmp_path, cost_per_job=1, cost_everything=5, everything_max_points_per_side=32,
                   everything_max_objects=50)
    return app.test_client(), rclient


def _holds(rclient, job_ids):
    return [int(rclient.get(names.hold(i))) for i in job_ids]


def test_a_job_costs_samq_cost_everything_and_the_deployment_bounds_apply(gw):
    client, rclient = gw
    key = KeyStore(rclient).create(20, "e")
    headers = {"x-api-key": key}
    r = client.post("/v1/jobs", json={"image": IMAGE, "everything": {"points_per_side": 64}}, headers=headers)
    assert r.status_code == 400 and "'everything.points_per_side' allows at most 32" in r.get_json()["error"]["message"]
    r = client.post("/v1/jobs", json={"image": IMAGE, "everything": {"max_objects": 51}}, headers=headers)
    assert r.status_code == 400 and "'everything.max_objects'" in r.get_json()["error"]["message"]
    r = client.post("/v1/jobs", json={"image": IMAGE, "everything": True}, headers=headers)
    assert r.status_code == 202, r.get_json()
    job = JobStore(rclient, 60).get(r.get_json()["id"])
    assert job.cost == 5 and _holds(rclient, [job.id]) == [5] and r.headers["x-remaining-credits"] == "15"
    assert job.params.everything["max_objects"] == 50  # the deployment's bound is each job's default


def test_a_batch_mixing_everything_with_prompts_charges_each_item_its_own_cost(gw):
    client, rclient = gw
    key = KeyStore(rclient).create(20, "mix")
    items = [{"image": IMAGE, "prompt": "rocket"}, {"image": IMAGE, "everything": True},
             {"image": IMAGE, "coordinates": [[10, 10]]}]
    r = client.post("/v1/batches", json={"items": items}, headers={"x-api-key": key})
    assert r.status_code == 202, r.get_json()
    ids = r.get_json()["job_ids"]
    assert _holds(rclient, ids) == [1, 5, 1]
    assert [JobStore(rclient, 60).get(i).cost for i in ids] == [1, 5, 1]
    assert KeyStore(rclient).credits.balance(hash_key(key)) == 13 and r.headers["x-remaining-credits"] == "13"
    stats = {k.decode(): int(v) for k, v in rclient.hgetall(names.STATS).items()}
    assert stats["credits_reserved"] == 7  # = the holds: the money invariant holds
    # Settling refunds or commits each job's own cost.
    store = JobStore(rclient, 60)
    store.fail(store.get(ids[1]), "x", "y", 500)
    assert KeyStore(rclient).credits.balance(hash_key(key)) == 18


def test_a_mixed_batch_needs_the_dearest_cost_available_and_says_so(gw):
    client, rclient = gw
    key = KeyStore(rclient).create(7, "poor")  # the sum (1 + 5 + 1) but not 3 x 5
    items = [{"image": IMAGE, "prompt": "rocket"}, {"image": IMAGE, "everything": True},
             {"image": IMAGE, "prompt": "rocket"}]
    r = client.post("/v1/batches", json={"items": items}, headers={"x-api-key": key})
    assert r.status_code == 406
    message = r.get_json()["error"]["message"]
    assert "costs 7 credits" in message and "needs 15" in message and "nothing was charged" in message
    assert KeyStore(rclient).credits.balance(hash_key(key)) == 7
    assert not list(rclient.scan_iter(match=names.hold("*")))
