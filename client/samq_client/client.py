"""`Client`: the samq API from Python, with retries, idempotency keys and typed results."""

from __future__ import annotations

import base64
import io
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

from samq_client import errors
from samq_client.models import Batch, Credits, Job, Segmentation
from samq_client.webhooks import verify_webhook

DEFAULT_URL = "http://127.0.0.1:8000"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
Image = Any  # a path, bytes, an http(s) URL or a PIL image
Point = Sequence[float]


def encode_image(image: Image) -> str:
    """What the API's `image` field takes: URLs as they are, anything else as base64."""
    if isinstance(image, str) and image.lstrip()[:8].lower().startswith(("http://", "https://")):
        return image.strip()
    if isinstance(image, str | os.PathLike):
        data = Path(image).read_bytes()
    elif isinstance(image, bytes | bytearray | memoryview):
        data = bytes(image)
    elif hasattr(image, "save"):  # a PIL image; PNG keeps every pixel as it is
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
    else:
        raise TypeError(f"image must be a path, bytes, a URL or a PIL image, not {type(image).__name__}")
    return base64.b64encode(data).decode()


def job_body(image: Image, prompt: str | list[str] | None = None, points: Iterable[Point] | None = None,
             negative_points: Iterable[Point] | None = None, boxes: Iterable[Sequence[float]] | None = None,
             outputs: Sequence[str] | None = None, **fields: Any) -> dict[str, Any]:
    """A `POST /v1/jobs` body (also one item of a batch); extra API fields pass through as they are."""
    body: dict[str, Any] = {"image": encode_image(image)}
    if prompt is not None:
        body["prompt"] = prompt
    if points:
        body["coordinates"] = [list(p) for p in points]
    if negative_points:
        body["remove_coordinates"] = [list(p) for p in negative_points]
    if boxes:
        body["boxes"] = [list(b) for b in boxes]
    if outputs:
        body["outputs"] = list(outputs)
    body.update({k: v for k, v in fields.items() if v is not None})
    return body


def _maybe_sent(exc: requests.RequestException) -> bool:
    """Whether a failed request may have reached the server (anything but a failure to connect)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return not isinstance(reason, NewConnectionError)


def _ref(obj: Job | Batch | str) -> str:
    return obj if isinstance(obj, str) else obj.id


class Client:
    """A samq API client. `url` and `api_key` default to `SAMQ_URL` and `SAMQ_API_KEY`."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout_s: float = 120,
                 max_retries: int = 5, backoff_s: float = 0.5, session: requests.Session | None = None) -> None:
        self.url = (url or os.environ.get("SAMQ_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("SAMQ_API_KEY")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.session = session or requests.Session()

    def close(self) -> None:
        """Close the HTTP connections."""
        self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None, idempotent: bool = True) -> requests.Response:
        """One API call, retried on connection errors, 429 and 5xx-busy answers; errors raised as named exceptions.

        Retrying a submit is safe because it carries an Idempotency-Key: the server answers a replay with the
        first answer and charges once. A call that is not idempotent is only retried when the server cannot
        have acted on it: it could not be reached, or it answered 429/503 (refused, nothing charged).
        """
        return self._send(method, path, json=json, params=params, headers=headers, idempotent=idempotent)

    def _send(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
              headers: Mapping[str, str] | None = None, idempotent: bool = True,
              lost: list[requests.RequestException] | None = None) -> requests.Response:
        """`request`; `lost` collects the failures after which the call was resent though it may have arrived."""
        sent = {"x-api-key": self.api_key} if self.api_key else {}
        sent.update(headers or {})
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = self.session.request(method, self.url + path, json=json, params=params, headers=sent,
                                                timeout=self.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if last or (not idempotent and _maybe_sent(exc)):
                    raise errors.ConnectionFailed(f"{method} {self.url}{path}: {exc}") from exc
                if lost is not None and _maybe_sent(exc):
                    lost.append(exc)
                time.sleep(self._delay(attempt, None))
                continue
            if response.status_code in RETRY_STATUSES and not last:
                time.sleep(self._delay(attempt, response.headers.get("Retry-After")))
                continue
            if response.status_code >= 400:
                raise self._error(response)
            return response
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Retry-After when the server gives one, else exponential backoff with jitter."""
        if retry_after:
            try:
                return min(float(retry_after), 300.0)
            except ValueError:
                pass
        return min(self.backoff_s * 2**attempt, 30.0) * random.uniform(0.5, 1.0)

    @staticmethod
    def _error(response: requests.Response) -> errors.SamqError:
        try:
            error = response.json()["error"]
            code, message = error.get("code"), error.get("message") or response.reason
        except (ValueError, KeyError, TypeError, AttributeError):
            code, message = None, response.text[:200] or response.reason
        return errors.error_for(response.status_code, code, message, response.headers.get("x-request-id"))

    # -- jobs --------------------------------------------------------------------------------------------------

    def submit(self, image: Image, prompt: str | list[str] | None = None, points: Iterable[Point] | None = None,
               negative_points: Iterable[Point] | None = None, boxes: Iterable[Sequence[float]] | None = None,
               outputs: Sequence[str] | None = None, idempotency_key: str | None = None, **fields: Any) -> Job:
        """Queue a job (`POST /v1/jobs`); extra API fields (priority, webhook_url, metadata, ...) pass through."""
        body = job_body(image, prompt, points, negative_points, boxes, outputs, **fields)
        key = idempotency_key or str(uuid.uuid4())
        return Job.from_dict(self.request("POST", "/v1/jobs", json=body, headers={"Idempotency-Key": key}).json())

    def get(self, job: Job | str) -> Job:
        """A job's current record."""
        return Job.from_dict(self.request("GET", f"/v1/jobs/{_ref(job)}").json())

    def wait(self, job: Job | str, timeout_s: float | None = None, poll_s: float = 0.25) -> Job:
        """Poll until the job succeeded, failed or was canceled, and return it (raises WaitTimeout)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        current = job if isinstance(job, Job) else self.get(job)
        while not current.done:
            if deadline is not None and time.monotonic() > deadline:
                raise errors.WaitTimeout(f"job {current.id} is still {current.status}")
            time.sleep(poll_s)
            poll_s = min(poll_s * 1.5, 2.0)
            current = self.get(current)
        return current

    def result(self, job: Job | str, output: str | None = None) -> bytes:
        """The bytes of one output of a finished job (its first output by default)."""
        params = {"output": output} if output else None
        return self.request("GET", f"/v1/jobs/{_ref(job)}/result", params=params).content

    def cancel(self, job: Job | str) -> Job:
        """Cancel a queued or running job (its credit is refunded); raises NotCancelable if it had already ended.

        A cancel whose answer was lost (a read timeout, a dropped connection) is resent. If the first one reached
        the server and canceled the job, the resend is answered 409 not_cancelable: the job is then read back,
        and a canceled job is the success it is, not an error.
        """
        job_id = _ref(job)
        lost: list[requests.RequestException] = []
        try:
            response = self._send("POST", f"/v1/jobs/{job_id}/cancel", lost=lost)
        except errors.NotCancelable:
            if not lost:
                raise
            current = self.get(job_id)
            if current.status != "canceled":
                raise
            return current
        return Job.from_dict(response.json())

    def segment(self, image: Image, prompt: str | list[str] | None = None, points: Iterable[Point] | None = None,
                negative_points: Iterable[Point] | None = None, boxes: Iterable[Sequence[float]] | None = None,
                outputs: Sequence[str] | None = None, timeout_s: float | None = None, **fields: Any) -> Segmentation:
        """Submit, wait and download every output: the one-call way (raises JobFailed when the job fails)."""
        job = self.wait(self.submit(image, prompt, points, negative_points, boxes, outputs, **fields), timeout_s)
        if not job.succeeded:
            raise errors.JobFailed(job)
        return Segmentation(job, {name: self.result(job, name) for name in job.outputs})

    def sam_v2_image(self, image: Image, prompt: str | None = None, coordinates: Iterable[Point] | None = None,
                     remove_coordinates: Iterable[Point] | None = None, overlay_mask: bool = True,
                     timeout_s: float | None = None) -> bytes:
        """The drop-in `POST /v1/sam-v2-image` (same path and fields as the hosted API): the JPEG it answers."""
        body: dict[str, Any] = {"image": encode_image(image), "overlay_mask": overlay_mask, "base64": False}
        if prompt is not None:
            body["prompt"] = prompt
        if coordinates:
            body["coordinates"] = [list(p) for p in coordinates]
        if remove_coordinates:
            body["remove_coordinates"] = [list(p) for p in remove_coordinates]
        # The drop-in takes no Idempotency-Key (nor does the hosted API): never resend what may have been received.
        response = self.request("POST", "/v1/sam-v2-image", json=body, idempotent=False)
        if response.status_code == 202:  # samq: the job outlived the sync wait and keeps running
            job = self.wait(Job.from_dict(response.json()), timeout_s)
            if not job.succeeded:
                raise errors.JobFailed(job)
            return self.result(job)
        return response.content

    # -- batches -----------------------------------------------------------------------------------------------

    def submit_batch(self, items: Iterable[Mapping[str, Any]], webhook_url: str | None = None,
                     priority: str | None = None, metadata: dict[str, Any] | None = None,
                     idempotency_key: str | None = None) -> Batch:
        """Queue many jobs at once (`POST /v1/batches`); items are job bodies (see `job_body`)."""
        body: dict[str, Any] = {"items": [self._item(item) for item in items]}
        body.update({k: v for k, v in (("webhook_url", webhook_url), ("priority", priority), ("metadata", metadata))
                     if v is not None})
        key = idempotency_key or str(uuid.uuid4())
        return Batch.from_dict(self.request("POST", "/v1/batches", json=body, headers={"Idempotency-Key": key}).json())

    @staticmethod
    def _item(item: Mapping[str, Any]) -> dict[str, Any]:
        """A batch item; a string image is sent as it is (base64 or URL), a Path, bytes or PIL image is encoded."""
        item = dict(item)
        if not isinstance(item.get("image"), str):
            item["image"] = encode_image(item["image"])
        return item

    def get_batch(self, batch: Batch | str, cursor: int | None = None, limit: int | None = None) -> Batch:
        """One page of a batch's status (`jobs` from `cursor`, at most `limit`)."""
        params = {k: v for k, v in (("cursor", cursor), ("limit", limit)) if v is not None}
        return Batch.from_dict(self.request("GET", f"/v1/batches/{_ref(batch)}", params=params or None).json())

    def batch_status(self, batch: Batch | str) -> Batch:
        """A batch's status with every job, all pages read."""
        page = self.get_batch(batch, limit=1000)
        jobs = list(page.jobs)
        while page.next_cursor is not None:
            page = self.get_batch(batch, cursor=page.next_cursor, limit=1000)
            jobs.extend(page.jobs)
        return Batch.from_dict({**page.raw, "jobs": [{"id": j.id, "status": j.status} for j in jobs],
                                "next_cursor": None})

    def wait_batch(self, batch: Batch | str, timeout_s: float | None = None, poll_s: float = 1.0,
                   on_update: Callable[[Batch], None] | None = None) -> Batch:
        """Poll until every job of the batch finished; `on_update` sees each status read."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            current = self.batch_status(batch)
            if on_update:
                on_update(current)
            if current.done:
                return current
            if deadline is not None and time.monotonic() > deadline:
                raise errors.WaitTimeout(f"batch {current.id}: {current.counts.finished}/{current.total} finished")
            time.sleep(poll_s)

    def export(self, batch: Batch | str, format: str = "coco") -> dict[str, Any] | bytes:  # noqa: A002 (the API's name)
        """A finished batch as a dataset (`GET /v1/batches/<id>/export`): "coco" gives the COCO instances file
        parsed, "yolo" the YOLO-seg zip's bytes (labels/<stem>.txt, data.yaml, info.json). Raises NotFinished
        while any of its jobs has not ended."""
        response = self.request("GET", f"/v1/batches/{_ref(batch)}/export", params={"format": format})
        return response.json() if format == "coco" else response.content

    def cancel_batch(self, batch: Batch | str) -> Batch:
        """Cancel every job of the batch that has not finished."""
        return Batch.from_dict(self.request("POST", f"/v1/batches/{_ref(batch)}/cancel").json())

    # -- account -----------------------------------------------------------------------------------------------

    def credits(self) -> Credits:
        """The caller's balance."""
        data = self.request("GET", "/v1/credits").json()
        return Credits(int(data["credits"]), data.get("name"))

    def webhook_secret(self) -> str:
        """The key's webhook signing secret (`whsec_...`), to give `verify_webhook`."""
        return self.request("GET", "/v1/webhooks/secret").json()["secret"]

    verify_webhook = staticmethod(verify_webhook)
