"""The gateway's /metrics in-process: request counts and latencies move by exactly the requests made; Redis's
job and credit counters are shown as Redis holds them."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from shared import names
from shared.settings import Settings


def scrape(client) -> dict[tuple[str, tuple], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    text = client.get("/metrics").get_data(as_text=True)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def client(redis_url, tmp_path):
    app = create_app(Settings(redis_url=redis_url, storage_url=f"file://{tmp_path}"))
    return app.test_client()


def test_requests_and_latency_move_by_the_requests_made(client):
    ok = ("samq_requests_total", (("method", "GET"), ("route", "/healthz"), ("status", "200")))
    missing = ("samq_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "404")))
    unauthorized = ("samq_requests_total", (("method", "GET"), ("route", "/v1/jobs/<job_id>"), ("status", "401")))
    latency = ("samq_request_duration_seconds_count", (("route", "/healthz"),))
    before = scrape(client)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/v1/jobs/abc").status_code == 401
    after = scrape(client)
    assert after[ok] - before.get(ok, 0) == 3
    assert after[latency] - before.get(latency, 0) == 3
    assert after[missing] - before.get(missing, 0) == 1
    assert after[unauthorized] - before.get(unauthorized, 0) == 1
    # The scrape itself is counted too, under its own route.
    metrics = ("samq_requests_total", (("method", "GET"), ("route", "/metrics"), ("status", "200")))
    assert after[metrics] - before.get(metrics, 0) == 1


def test_job_and_credit_counters_come_from_redis(client, rclient):
    before = scrape(client)
    assert before[("samq_credits_total", (("event", "reserved"),))] == 0  # shown before anything happened
    rclient.hset(names.STATS, mapping={"jobs_accepted": 4, "jobs_succeeded": 3, "jobs_failed": 1,
                                       "credits_reserved": 8, "credits_committed": 6, "credits_refunded": 2})
    after = scrape(client)
    assert after[("samq_jobs_total", (("event", "accepted"),))] == 4
    assert after[("samq_jobs_total", (("event", "succeeded"),))] == 3
    assert after[("samq_jobs_total", (("event", "failed"),))] == 1
    assert after[("samq_credits_total", (("event", "reserved"),))] == 8
    assert after[("samq_credits_total", (("event", "committed"),))] == 6
    assert after[("samq_credits_total", (("event", "refunded"),))] == 2
    assert not [k for k in after if k[0] == "samq_jobs_total" and k[1][0][1].startswith("credits")]
    rclient.zadd(names.waiting(names.QUEUE_HIGH), {"j1": 1, "j2": 2})
    assert scrape(client)[("samq_queue_depth", (("queue", names.QUEUE_HIGH),))] == 2
