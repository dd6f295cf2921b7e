"""samq-client's AsyncClient end to end against the running stack (the `stack` fixture the sync client's tests use):
submit, wait, get, result, the one-call segment and the drop-in, named errors with the server's codes, idempotency
(a replayed key and a submit whose answer was lost are one job, paid once), a cancel whose answer was lost comes
back canceled (not NotCancelable) and a refused cancel is not resent, and batches read page by page."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import samq_client
from samq_client import AsyncClient

from harness.photos import ASTRONAUT_PNG, CHELSEA_PNG, ROCKET_JPG, open_image
from tests.client_transports import LosesAnswers


def run(coroutine: Any) -> Any:
    """Run one test's coroutine (pytest-asyncio is not part of the test stack)."""
    return asyncio.run(coroutine)


def test_async_submit_wait_get_result_segment_and_named_errors(stack, image_host):
    key = stack.new_key(10)

    async def main() -> None:
        async with AsyncClient(stack.url, key) as client:
            job = await client.submit(ROCKET_JPG, prompt="rocket", outputs=["mask_png"], metadata={"who": "async"})
            assert job.status in ("queued", "running") and job.id
            done = await client.wait(job, timeout_s=60)
            assert done.succeeded and done.metadata == {"who": "async"} and done.outputs == ["mask_png"]
            assert (await client.get(job.id)).finished_at == done.finished_at and done.attempts >= 1
            mask = await client.result(done, "mask_png")
            assert open_image(mask).size == (640, 427) and await client.result(done.id) == mask
            # Two at once on one client: the event loop is not blocked while either waits.
            segs = await asyncio.gather(
                client.segment(CHELSEA_PNG, points=[(200, 150)], outputs=["cutout_png", "json"], timeout_s=60),
                client.segment(ASTRONAUT_PNG.read_bytes(), boxes=[(100, 50, 400, 500)], outputs=["mask_png"],
                               timeout_s=60))
            assert open_image(segs[0].outputs["cutout_png"]).size == (451, 300) and segs[0].json()["width"] == 451
            assert open_image(segs[1].outputs["mask_png"]).size == (512, 512)
            dropin = await client.sam_v2_image(f"http://{image_host}/photos/astronaut.png", coordinates=[(250, 200)])
            assert open_image(dropin).format == "JPEG"
            assert (await client.credits()).credits == 6

            with pytest.raises(samq_client.JobFailed) as failed:
                await client.segment(f"http://{image_host}/photos/missing.jpg", prompt="x", timeout_s=60)
            assert failed.value.code == "fetch_failed" and failed.value.job.status == "failed"
            with pytest.raises(samq_client.NoResult):
                await client.result(failed.value.job)
            with pytest.raises(samq_client.InvalidRequest) as bad:
                await client.submit(ROCKET_JPG, prompt="rocket", outputs=["nope"])
            assert (bad.value.status, bad.value.code) == (400, "invalid_request") and "nope" in bad.value.message
            assert bad.value.request_id
            with pytest.raises(samq_client.NotFound) as missing:
                await client.get("no-such-job")
            assert (missing.value.status, missing.value.code) == (404, "not_found")
        async with AsyncClient(stack.url, "sk_wrong") as stranger:
            with pytest.raises(samq_client.Unauthorized) as refused:
                await stranger.credits()
            assert (refused.value.status, refused.value.code) == (401, "unauthorized")

    run(main())
    assert stack.balance(key) == 6  # four successes paid; the failure refunded; bad input and errors free


def test_async_idempotency_and_a_cancel_whose_answer_was_lost(stack):
    key = stack.new_key(5)
    jobs_before = stack.job_count()
    # The answers of the first submit with key a-2 and of the first cancel are lost after the server acted on them.
    transport = LosesAnswers(lambda r: "cancel" if r.url.path.endswith("/cancel") else
                             "a-2" if r.headers.get("Idempotency-Key") == "a-2" else None)

    async def main() -> None:
        async with AsyncClient(stack.url, key, backoff_s=0.05,
                               http_client=httpx.AsyncClient(transport=transport)) as client:
            first = await client.submit(ROCKET_JPG, points=[(10, 10)], outputs=["json"], idempotency_key="a-1")
            again = await client.submit(ROCKET_JPG, points=[(10, 10)], outputs=["json"], idempotency_key="a-1")
            assert again.id == first.id and (await client.wait(first, timeout_s=60)).succeeded
            with stack.paused("w1"):  # queued while canceled: refunded at once
                second = await client.submit(ROCKET_JPG, points=[(20, 20)], outputs=["json"], priority="low",
                                             idempotency_key="a-2")  # answer lost, resent: the same job
                assert ("POST", "/v1/jobs") == transport.seen[-1] == transport.seen[-2]
                assert (await client.get(second)).status == "queued"
                transport.seen.clear()
                canceled = await client.cancel(second)
                assert canceled.id == second.id and canceled.status == "canceled"
                # Sent, answer lost, resent (refused: already canceled), read back: a success.
                path = f"/v1/jobs/{second.id}"
                assert transport.seen == [("POST", f"{path}/cancel"), ("POST", f"{path}/cancel"), ("GET", path)]
            transport.seen.clear()
            with pytest.raises(samq_client.NotCancelable) as refused:
                await client.cancel(second)
            assert refused.value.status == 409 and transport.seen == [("POST", f"/v1/jobs/{second.id}/cancel")]

    run(main())
    assert stack.job_count() - jobs_before == 2  # a replay and a resend made no job
    assert stack.balance(key) == 4  # the first paid once, the canceled one refunded once


def test_async_batches_page_by_page(stack):
    key = stack.new_key(5)
    items = [samq_client.job_body(path, points=[(100, 100)], outputs=["json"]) for path in (ROCKET_JPG, CHELSEA_PNG)]

    async def main() -> None:
        async with AsyncClient(stack.url, key) as client:
            batch = await client.submit_batch(items, priority="low", idempotency_key="async-batch-1")
            assert batch.total == 2 and len(batch.job_ids) == 2
            replay = await client.submit_batch(items, priority="low", idempotency_key="async-batch-1")
            assert replay.id == batch.id
            page = await client.get_batch(batch, limit=1)
            assert page.next_cursor == 1 and [j.id for j in page.jobs] == batch.job_ids[:1]  # an int, as sent
            last = await client.get_batch(batch.id, cursor=page.next_cursor, limit=1)
            assert last.next_cursor is None and [j.id for j in last.jobs] == batch.job_ids[1:]
            seen: list[samq_client.Batch] = []
            final = await client.wait_batch(batch, timeout_s=120, poll_s=0.3, on_update=seen.append)
            assert final.done and final.counts.succeeded == 2 and [j.id for j in final.jobs] == batch.job_ids
            assert seen[-1] is final and final.urls["self"].endswith(f"/v1/batches/{batch.id}")
            coco = await client.export(batch)
            assert {image["width"] for image in coco["images"]} == {640, 451}

    run(main())
    assert stack.balance(key) == 3  # two jobs, paid once
