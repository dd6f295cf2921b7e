"""Coordinate parsing, boolean coercion and request rules."""

import pytest

from shared.errors import InvalidRequest
from shared.schemas import JobRequest, SegmentRequest, parse_body, parse_bool, parse_points


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("[834,74]", [(834.0, 74.0)]),
        ("[[839,74],[844,20]]", [(839.0, 74.0), (844.0, 20.0)]),
        ([834, 74], [(834.0, 74.0)]),
        ([[839, 74], [844, 20]], [(839.0, 74.0), (844.0, 20.0)]),
        ("834,74", [(834.0, 74.0)]),
        (" [ 1.5 , 2 ] ", [(1.5, 2.0)]),
        ("", []),
        (None, []),
        ([], []),
    ],
)
def test_parse_points_accepts_every_documented_spelling(value, expected):
    assert parse_points(value) == expected


@pytest.mark.parametrize(
    "value",
    ["[1]", "[1,2,3]", "[[1,2],[3]]", "[[1,2],3]", "abc", "[1,NaN]", "[1,Infinity]", "[-1,5]", '["a","b"]',
     "[true,false]", {"x": 1}, 5, "[[[1,2]]]"],
)
def test_parse_points_rejects_malformed(value):
    with pytest.raises(ValueError):
        parse_points(value)


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), (1, True), (0, False), ("true", True), ("False", False),
    ("1", True), ("0", False), ("TRUE", True), (" yes ", True), ("no", False),
])
def test_parse_bool(value, expected):
    assert parse_bool(value) is expected


@pytest.mark.parametrize("value", ["maybe", 2, -1, None, [], "2"])
def test_parse_bool_rejects(value):
    with pytest.raises(ValueError):
        parse_bool(value)


def test_segment_request_defaults_match_the_hosted_api():
    req = parse_body(SegmentRequest, {"image": "abc", "prompt": "boy"})
    assert req.overlay_mask is True and req.base64 is False
    assert req.params().model_dump(exclude_unset=True) == {"prompt": "boy", "overlay_mask": True,
                                                          "outputs": ["overlay_jpeg"]}


def test_prompt_wins_over_coordinates():
    req = parse_body(SegmentRequest, {"image": "abc", "prompt": "dog", "coordinates": "[1,2]"})
    assert req.params().points == [] and "points" not in req.params().model_fields_set


def test_either_prompt_or_coordinates_is_required():
    req = parse_body(SegmentRequest, {"image": "abc", "prompt": "   "})
    with pytest.raises(InvalidRequest, match="prompt"):
        req.check(max_points=10)


def test_too_many_points_names_the_fields():
    req = parse_body(SegmentRequest, {"image": "abc", "coordinates": [[1, 1]] * 6, "remove_coordinates": [[2, 2]] * 5})
    with pytest.raises(InvalidRequest, match="at most 10"):
        req.check(max_points=10)


def test_errors_name_the_field():
    with pytest.raises(InvalidRequest) as info:
        parse_body(SegmentRequest, {"image": "abc", "coordinates": "[1]", "overlay_mask": "perhaps"})
    assert "'coordinates'" in info.value.message and "'overlay_mask'" in info.value.message


def test_missing_image_and_non_object_bodies():
    with pytest.raises(InvalidRequest, match="'image'"):
        parse_body(SegmentRequest, {"prompt": "boy"})
    for body in (None, [], "x", 3):
        with pytest.raises(InvalidRequest, match="JSON object"):
            parse_body(SegmentRequest, body)
    with pytest.raises(InvalidRequest, match="'image'"):
        parse_body(SegmentRequest, {"image": 12, "prompt": "boy"})


def test_drop_in_ignores_unknown_fields_but_jobs_refuse_them():
    assert parse_body(SegmentRequest, {"image": "a", "prompt": "b", "seed": 3}).prompt == "b"
    with pytest.raises(InvalidRequest, match="'promt': unknown field"):
        parse_body(JobRequest, {"image": "a", "promt": "b"})


def test_url_detection():
    assert parse_body(SegmentRequest, {"image": "https://example.com/a.jpg", "prompt": "x"}).is_url
    assert parse_body(SegmentRequest, {"image": " HTTP://example.com/a.jpg", "prompt": "x"}).is_url
    assert not parse_body(SegmentRequest, {"image": "aGVsbG8=", "prompt": "x"}).is_url


@pytest.mark.parametrize("point", [[float("nan"), 1.0], [1.0, float("inf")], [float("-inf"), 2.0], "[1e999, 1]",
                                   "[[1, 2], [3, -1e999]]"])
def test_points_must_be_finite(point):
    with pytest.raises(ValueError, match="finite"):
        parse_points(point)


def test_boxes_multimask_outputs_and_labels():
    from shared.schemas import parse_boxes, parse_multimask

    assert parse_boxes("[1,2,3,4]") == [(1.0, 2.0, 3.0, 4.0)]
    assert parse_boxes([[1, 2, 3, 4], [0, 0, 9, 9]]) == [(1.0, 2.0, 3.0, 4.0), (0.0, 0.0, 9.0, 9.0)]
    for bad in ("[1,2,3]", [[3, 3, 1, 1]], [[1, 2, 3, float("inf")]], "nope", [[-1, 0, 3, 3]]):
        with pytest.raises(ValueError):
            parse_boxes(bad)
    assert [parse_multimask(v) for v in (None, "all", "ALL", "true", 0)] == [None, "all", "all", True, False]
    req = parse_body(JobRequest, {"image": "a", "coordinates": [[1, 1], [2, 2]], "point_labels": [1, 0],
                                  "remove_coordinates": "[3,3]", "outputs": "json, mask_png,json"})
    req.check(10)
    assert req.params().points == [[1, 1], [2, 2], [3, 3]] and req.params().labels == [1, 0, 0]
    assert req.params().outputs == ["json", "mask_png"]
    default = parse_body(JobRequest, {"image": "a", "prompt": "Boy. Dog", "overlay_mask": False})
    assert default.params().outputs == ["mask_jpeg", "json"]
