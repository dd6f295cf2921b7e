"""Contracts between the parts: the routes and the OpenAPI document, authentication on every /v1 route, and
the client's error table against every code the server can answer. In-process through create_app, real Redis."""

from __future__ import annotations

import inspect
import re

import pytest
from samq_client import errors as client_errors

from gateway import errors as gateway_errors
from harness.procs import free_port
from shared import errors as shared_errors
from tests.unit.gateway_app import make_app

# Served by the gateway but not API operations, so not in the document: the playground and its files, the
# docs page, its vendored Swagger UI assets, and the document itself.
NOT_DOCUMENTED = {"/", "/static/<path:filename>", "/docs", "/docs/assets/<name>", "/openapi.json"}
IGNORED_METHODS = {"HEAD", "OPTIONS"}
HTTP_METHODS = {"GET", "PUT", "POST", "DELETE", "PATCH", "TRACE"}  # a path item's other keys are not operations
# Answered for an HTTP status the gateway has no code for (a catch-all): the client maps it by status.
BY_STATUS_ONLY = {"http_error"}


@pytest.fixture
def app(redis_url, tmp_path):
    return make_app(redis_url, tmp_path)


def _openapi_path(rule: str) -> str:
    """Flask's /v1/jobs/<job_id>/deliveries/<int:n> as OpenAPI spells it: /v1/jobs/{job_id}/deliveries/{n}."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _routes(app) -> dict[str, set[str]]:
    """Each rule of the URL map with its methods (HEAD and OPTIONS, which Flask adds, left out)."""
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        routes.setdefault(rule.rule, set()).update(rule.methods - IGNORED_METHODS)
    return routes


def test_every_route_is_in_the_openapi_document_with_its_methods(app):
    document = app.test_client().get("/openapi.json").get_json()
    documented = {path: {method.upper() for method in item if method.upper() in HTTP_METHODS}
                  for path, item in document["paths"].items()}
    routes = _routes(app)
    assert set(routes) >= NOT_DOCUMENTED, NOT_DOCUMENTED - set(routes)  # the exceptions are real routes
    served = {_openapi_path(rule): methods for rule, methods in routes.items() if rule not in NOT_DOCUMENTED}
    assert served == documented  # no route undocumented, no documented route missing, the same methods


def test_every_v1_route_answers_401_json_without_a_key(app):
    client = app.test_client()
    v1 = {rule: methods for rule, methods in _routes(app).items() if rule.startswith("/v1/")}
    assert len(v1) >= 15  # the API's routes were found
    for rule, methods in sorted(v1.items()):
        path = re.sub(r"<int:[^<>]+>", "1", rule)
        path = re.sub(r"<[^<>]+>", "0123456789abcdef", path)
        for method in sorted(methods):
            for headers in ({}, {"x-api-key": "sk_unknown"}, {"Authorization": "Bearer sk_unknown"}):
                r = client.open(path, method=method, json={} if method == "POST" else None, headers=headers)
                assert r.status_code == 401, (method, path, headers, r.status_code, r.data[:200])
                assert r.mimetype == "application/json", (method, path)
                assert r.get_json()["error"]["code"] == "unauthorized", (method, path, r.get_json())


def _server_codes(tmp_path) -> set[str]:
    """Every error code the gateway can answer: its named errors, its HTTP-status codes, and what it says while
    Redis is unreachable (asked of a gateway whose Redis is not there)."""
    codes = {cls.code for _, cls in inspect.getmembers(shared_errors, inspect.isclass)
             if issubclass(cls, shared_errors.SamqError)}
    codes |= set(gateway_errors._HTTP_CODES.values())
    down = make_app(f"redis://127.0.0.1:{free_port()}/0", tmp_path).test_client()
    r = down.get("/v1/credits", headers={"x-api-key": "sk_any"})
    assert r.status_code == 503 and r.headers["Retry-After"]
    codes.add(r.get_json()["error"]["code"])
    return codes


def test_the_client_names_every_error_code_the_server_can_send(tmp_path):
    codes = _server_codes(tmp_path)
    assert {"unavailable", "unsupported_image", "webhook_disabled", "internal_error"} <= codes  # all collected
    table = client_errors._BY_CODE
    assert codes - BY_STATUS_ONLY - set(table) == set()
    for code in codes - BY_STATUS_ONLY:
        raised = client_errors.error_for(418, code, "m")
        assert type(raised) is table[code] and raised.code == code
