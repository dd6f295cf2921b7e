"""The OpenAPI document is valid and covers every public route."""

from openapi_spec_validator import validate

from gateway.openapi import openapi_document


def test_document_is_valid_openapi_3_1():
    validate(openapi_document())


def test_every_route_is_described():
    paths = openapi_document()["paths"]
    for path in ("/v1/sam-v2-image", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result", "/v1/credits",
                 "/healthz", "/readyz", "/metrics", "/v1/webhooks/secret", "/v1/webhooks/secret/rotate",
                 "/v1/webhooks/enable", "/v1/jobs/{job_id}/deliveries", "/v1/jobs/{job_id}/deliveries/{n}/redeliver"):
        assert path in paths
    job_fields = openapi_document()["components"]["schemas"]["JobRequest"]["properties"]
    assert {"prompt", "coordinates", "boxes", "outputs", "multimask", "point_labels"} <= set(job_fields)
