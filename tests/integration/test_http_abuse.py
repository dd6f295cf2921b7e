"""Abuse at the HTTP layer, against the real gunicorn: huge headers are refused, the gateway stays up."""

from __future__ import annotations

import requests


def test_huge_or_too_many_headers_are_refused_and_the_gateway_stays_up(stack):
    key = stack.new_key(1)
    big = requests.get(stack.url + "/v1/credits", headers={"x-api-key": key, "x-big": "a" * 20_000}, timeout=10)
    many = requests.get(stack.url + "/v1/credits", headers={"x-api-key": key, **{f"x-h{i}": "1" for i in range(150)}},
                        timeout=10)
    long_line = requests.get(stack.url + "/v1/credits?" + "q=" + "a" * 10_000, headers={"x-api-key": key}, timeout=10)
    # gunicorn refuses these before the app sees them (limit_request_field_size, _fields, _line)
    assert big.status_code in (400, 431) and many.status_code in (400, 431) and long_line.status_code in (400, 414)
    assert stack.balance(key) == 1
    assert requests.get(stack.url + "/v1/credits", headers={"x-api-key": key}, timeout=10).json()["credits"] == 1
