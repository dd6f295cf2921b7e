"""What `Client` and `AsyncClient` share: every call written once, as a flow that does no I/O of its own.

A flow is a generator. It yields a `Call` (one HTTP request) or a `Sleep` and is sent back the response; a failure to
get one is thrown into it as a `TransportFailure`. The sync client runs flows with requests and `time.sleep`, the
async one with httpx and `asyncio.sleep`, so the request bodies, the retry policy (what may be resent, backoff,
Retry-After), the records parsed and the errors raised are the same code for both (the sans-I/O pattern).
"""

from __future__ import annotations

import base64
import functools
import inspect
import io
import os
import random
import time
import uuid
from collections.abc import Callable, Coroutine, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

from samq_client import errors
from samq_client.records import Batch, Credits, Job, Segmentation
from samq_client.webhooks import verify_webhook

DEFAULT_URL = "http://127.0.0.1:8000"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
Image = Any  # a path, bytes, an http(s) URL or a PIL image
Point = Sequence[float]


class Response(Protocol):
    """What a flow reads of an answer: requests' and httpx's responses both have it."""

    status_code: int
    content: bytes
    text: str

    @property
    def headers(self) -> Mapping[str, str]: ...

    def json(self) -> Any: ...


@dataclass(frozen=True)
class Call:
    """One HTTP request for the driver to send (`url` is whole; the driver adds only its timeout)."""

    method: str
    url: str
    json: Any = None
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Sleep:
    """Wait this long before the flow goes on."""

    seconds: float


class TransportFailure(Exception):
    """No answer came (the driver's own exception in `exc`); `maybe_sent` unless it failed to connect."""

    def __init__(self, exc: BaseException, maybe_sent: bool) -> None:
        super().__init__(str(exc))
        self.exc = exc
        self.maybe_sent = maybe_sent


T = TypeVar("T")
P = ParamSpec("P")
Flow = Generator["Call | Sleep", Any, T]


class Base:
    """The settings every flow reads. `url` and `api_key` default to `SAMQ_URL` and `SAMQ_API_KEY`."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout_s: float = 120,
                 max_retries: int = 5, backoff_s: float = 0.5) -> None:
        self.url = (url or os.environ.get("SAMQ_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("SAMQ_API_KEY")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s


class Stepper:
    """Runs a flow one step at a time for a driver: `next()` gives the step to do, None once it returned `result`.
    The driver puts the step's answer in `value`, or sends it inside `answering`, which throws its failure in."""

    def __init__(self, flow: Flow[Any]) -> None:
        self.flow = flow
        self.value: Any = None
        self.error: BaseException | None = None
        self.result: Any = None

    def next(self) -> Call | Sleep | None:
        """The next step; None when the flow is done (its return value is then in `result`)."""
        error, self.error = self.error, None
        try:
            step = self.flow.throw(error) if error is not None else self.flow.send(self.value)
        except StopIteration as stop:
            self.result = stop.value
            return None
        self.value = None
        return step

    @contextmanager
    def answering(self, failures: tuple[type[BaseException], ...],
                  maybe_sent: Callable[[Any], bool]) -> Iterator[None]:
        """Around the driver's send: one of its `failures` (no answer came) goes to the flow as a TransportFailure."""
        try:
            yield
        except failures as exc:
            self.error = TransportFailure(exc, maybe_sent(exc))


class Blocking(Base):
    """A client whose `_drive` runs a flow to its end and returns its result (the methods are plain functions)."""

    def _drive(self, flow: Flow[T]) -> T:
        raise NotImplementedError


class Awaiting(Base):
    """A client whose `_drive` is a coroutine (the methods are coroutine functions)."""

    async def _drive(self, flow: Flow[T]) -> T:
        raise NotImplementedError


def _as_method(method: Callable[..., Any], flow: Callable[..., Any]) -> None:
    """Give `method` the flow's name and docstring, and the signature help() shows: `self`, and what the flow
    returns (`Flow[Job]` -> `Job`; a coroutine method's signature names what it returns awaited, as `async def`)."""
    functools.update_wrapper(method, flow)
    signature = inspect.signature(flow)
    params = list(signature.parameters.values())
    returns = str(signature.return_annotation).removeprefix("Flow[").removesuffix("]")
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[params[0].replace(name="self", annotation=inspect.Parameter.empty), *params[1:]],
        return_annotation=returns)


def _blocking(flow: Callable[Concatenate[Any, P], Flow[T]]) -> Callable[Concatenate[Any, P], T]:
    def method(self: Blocking, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._drive(flow(self, *args, **kwargs))
    _as_method(method, flow)
    return method


def _awaiting(flow: Callable[Concatenate[Any, P], Flow[T]]) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]:
    async def method(self: Awaiting, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._drive(flow(self, *args, **kwargs))
    _as_method(method, flow)
    return method


class FlowMethod(Generic[P, T]):
    """A flow as a method of both clients: a plain method on a `Blocking` one, a coroutine method on an `Awaiting`
    one; same name, arguments and docstring either way (the overloads tell type checkers which is which)."""

    def __init__(self, flow: Callable[Concatenate[Any, P], Flow[T]]) -> None:
        self.sync, self.coroutine = _blocking(flow), _awaiting(flow)

    @overload
    def __get__(self, obj: Awaiting, owner: type | None = None) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __get__(self, obj: Blocking, owner: type | None = None) -> Callable[P, T]: ...

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> FlowMethod[P, T]: ...

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        cls = owner if obj is None else type(obj)
        function = self.coroutine if cls is not None and issubclass(cls, Awaiting) else self.sync
        return function if obj is None else function.__get__(obj, cls)


# -- request bodies ----------------------------------------------------------------------------------------------

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
    body.update(_clicks(points, negative_points))
    if boxes:
        body["boxes"] = [list(b) for b in boxes]
    if outputs:
        body["outputs"] = list(outputs)
    body.update({k: v for k, v in fields.items() if v is not None})
    return body


def _clicks(points: Iterable[Point] | None, negative_points: Iterable[Point] | None) -> dict[str, Any]:
    """The API's `coordinates` and `remove_coordinates` fields, those given."""
    body = {}
    if points:
        body["coordinates"] = [list(p) for p in points]
    if negative_points:
        body["remove_coordinates"] = [list(p) for p in negative_points]
    return body


def batch_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A batch item; a string image is sent as it is (base64 or URL), a Path, bytes or PIL image is encoded."""
    item = dict(item)
    if not isinstance(item.get("image"), str):
        item["image"] = encode_image(item["image"])
    return item


def _ref(obj: Job | Batch | str) -> str:
    return obj if isinstance(obj, str) else obj.id


# -- the retry policy ------------------------------------------------------------------------------------------

def delay(backoff_s: float, attempt: int, retry_after: str | None) -> float:
    """Retry-After when the server gives one, else exponential backoff with jitter."""
    if retry_after:
        try:
            return min(float(retry_after), 300.0)
        except ValueError:
            pass
    return min(backoff_s * 2**attempt, 30.0) * random.uniform(0.5, 1.0)


def error_from(response: Response) -> errors.SamqError:
    """The named exception for an error answer, from its JSON `error` (or its status when it has none)."""
    # requests names the status text `reason`, httpx `reason_phrase`.
    reason: str = getattr(response, "reason", None) or getattr(response, "reason_phrase", None) or ""
    try:
        error = response.json()["error"]
        code, message = error.get("code"), error.get("message") or reason
    except (ValueError, KeyError, TypeError, AttributeError):
        code, message = None, response.text[:200] or reason
    return errors.error_for(response.status_code, code, message, response.headers.get("x-request-id"))


def send(c: Base, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
         headers: Mapping[str, str] | None = None, idempotent: bool = True,
         lost: list[BaseException] | None = None) -> Flow[Any]:
    """`request`; `lost` collects the failures after which the call was resent though it may have arrived."""
    sent = {"x-api-key": c.api_key} if c.api_key else {}
    sent.update(headers or {})
    for attempt in range(c.max_retries + 1):
        last = attempt == c.max_retries
        try:
            response = yield Call(method, c.url + path, json=json, params=params, headers=sent)
        except TransportFailure as failure:
            if last or (not idempotent and failure.maybe_sent):
                raise errors.ConnectionFailed(f"{method} {c.url}{path}: {failure.exc}") from failure.exc
            if lost is not None and failure.maybe_sent:
                lost.append(failure.exc)
            yield Sleep(delay(c.backoff_s, attempt, None))
            continue
        if response.status_code in RETRY_STATUSES and not last:
            yield Sleep(delay(c.backoff_s, attempt, response.headers.get("Retry-After")))
            continue
        if response.status_code >= 400:
            raise error_from(response)
        return response
    raise AssertionError("unreachable")


def request(c: Base, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
            headers: Mapping[str, str] | None = None, idempotent: bool = True) -> Flow[Any]:
    """One API call, retried on connection errors, 429 and 5xx-busy answers; errors raised as named exceptions.

    Retrying a submit is safe because it carries an Idempotency-Key: the server answers a replay with the
    first answer and charges once. A call that is not idempotent is only retried when the server cannot
    have acted on it: it could not be reached, or it answered 429/503 (refused, nothing charged).
    """
    return (yield from send(c, method, path, json=json, params=params, headers=headers, idempotent=idempotent))


# -- jobs --------------------------------------------------------------------------------------------------------

def submit(c: Base, image: Image, prompt: str | list[str] | None = None, points: Iterable[Point] | None = None,
           negative_points: Iterable[Point] | None = None, boxes: Iterable[Sequence[float]] | None = None,
           outputs: Sequence[str] | None = None, idempotency_key: str | None = None, **fields: Any) -> Flow[Job]:
    """Queue a job (`POST /v1/jobs`); extra API fields (priority, webhook_url, metadata, ...) pass through."""
    body = job_body(image, prompt, points, negative_points, boxes, outputs, **fields)
    key = idempotency_key or str(uuid.uuid4())
    response = yield from send(c, "POST", "/v1/jobs", json=body, headers={"Idempotency-Key": key})
    return Job.from_dict(response.json())


def get(c: Base, job: Job | str) -> Flow[Job]:
    """A job's current record."""
    return Job.from_dict((yield from send(c, "GET", f"/v1/jobs/{_ref(job)}")).json())


def wait(c: Base, job: Job | str, timeout_s: float | None = None, poll_s: float = 0.25) -> Flow[Job]:
    """Poll until the job succeeded, failed or was canceled, and return it (raises WaitTimeout)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    current = job if isinstance(job, Job) else (yield from get(c, job))
    while not current.done:
        if deadline is not None and time.monotonic() > deadline:
            raise errors.WaitTimeout(f"job {current.id} is still {current.status}")
        yield Sleep(poll_s)
        poll_s = min(poll_s * 1.5, 2.0)
        current = yield from get(c, current)
    return current


def result(c: Base, job: Job | str, output: str | None = None) -> Flow[bytes]:
    """The bytes of one output of a finished job (its first output by default)."""
    params = {"output": output} if output else None
    return (yield from send(c, "GET", f"/v1/jobs/{_ref(job)}/result", params=params)).content


def cancel(c: Base, job: Job | str) -> Flow[Job]:
    """Cancel a queued or running job (its credit is refunded); raises NotCancelable if it had already ended.

    A cancel whose answer was lost (a read timeout, a dropped connection) is resent. If the first one reached
    the server and canceled the job, the resend is answered 409 not_cancelable: the job is then read back,
    and a canceled job is the success it is, not an error.
    """
    job_id = _ref(job)
    lost: list[BaseException] = []
    try:
        response = yield from send(c, "POST", f"/v1/jobs/{job_id}/cancel", lost=lost)
    except errors.NotCancelable:
        if not lost:
            raise
        current = yield from get(c, job_id)
        if current.status != "canceled":
            raise
        return current
    return Job.from_dict(response.json())


def _finished(c: Base, job: Job, timeout_s: float | None) -> Flow[Job]:
    """Wait for `job`; JobFailed unless it succeeded."""
    done = yield from wait(c, job, timeout_s)
    if not done.succeeded:
        raise errors.JobFailed(done)
    return done


def segment(c: Base, image: Image, prompt: str | list[str] | None = None, points: Iterable[Point] | None = None,
            negative_points: Iterable[Point] | None = None, boxes: Iterable[Sequence[float]] | None = None,
            outputs: Sequence[str] | None = None, timeout_s: float | None = None,
            **fields: Any) -> Flow[Segmentation]:
    """Submit, wait and download every output: the one-call way (raises JobFailed when the job fails)."""
    queued = yield from submit(c, image, prompt, points, negative_points, boxes, outputs, **fields)
    job = yield from _finished(c, queued, timeout_s)
    downloaded = {}
    for name in job.outputs:  # a loop, not a comprehension: a flow cannot yield inside one
        downloaded[name] = yield from result(c, job, name)
    return Segmentation(job, downloaded)


def sam_v2_image(c: Base, image: Image, prompt: str | None = None, coordinates: Iterable[Point] | None = None,
                 remove_coordinates: Iterable[Point] | None = None, overlay_mask: bool = True,
                 timeout_s: float | None = None) -> Flow[bytes]:
    """The drop-in `POST /v1/sam-v2-image` (same path and fields as the hosted API): the JPEG it answers."""
    body: dict[str, Any] = {"image": encode_image(image), "overlay_mask": overlay_mask, "base64": False}
    if prompt is not None:
        body["prompt"] = prompt
    body.update(_clicks(coordinates, remove_coordinates))
    # The drop-in takes no Idempotency-Key (nor does the hosted API): never resend what may have been received.
    response = yield from send(c, "POST", "/v1/sam-v2-image", json=body, idempotent=False)
    if response.status_code == 202:  # samq: the job outlived the sync wait and keeps running
        job = yield from _finished(c, Job.from_dict(response.json()), timeout_s)
        return (yield from result(c, job))
    return response.content


# -- batches -----------------------------------------------------------------------------------------------------

def submit_batch(c: Base, items: Iterable[Mapping[str, Any]], webhook_url: str | None = None,
                 priority: str | None = None, metadata: dict[str, Any] | None = None,
                 idempotency_key: str | None = None) -> Flow[Batch]:
    """Queue many jobs at once (`POST /v1/batches`); items are job bodies (see `job_body`)."""
    body: dict[str, Any] = {"items": [batch_item(item) for item in items]}
    body.update({k: v for k, v in (("webhook_url", webhook_url), ("priority", priority), ("metadata", metadata))
                 if v is not None})
    key = idempotency_key or str(uuid.uuid4())
    response = yield from send(c, "POST", "/v1/batches", json=body, headers={"Idempotency-Key": key})
    return Batch.from_dict(response.json())


def get_batch(c: Base, batch: Batch | str, cursor: int | None = None, limit: int | None = None) -> Flow[Batch]:
    """One page of a batch's status (`jobs` from `cursor`, at most `limit`)."""
    params = {k: v for k, v in (("cursor", cursor), ("limit", limit)) if v is not None}
    return Batch.from_dict((yield from send(c, "GET", f"/v1/batches/{_ref(batch)}", params=params or None)).json())


def batch_status(c: Base, batch: Batch | str) -> Flow[Batch]:
    """A batch's status with every job, all pages read."""
    page = yield from get_batch(c, batch, limit=1000)
    jobs = list(page.jobs)
    while page.next_cursor is not None:
        page = yield from get_batch(c, batch, cursor=page.next_cursor, limit=1000)
        jobs.extend(page.jobs)
    return Batch.from_dict({**page.raw, "jobs": [{"id": j.id, "status": j.status} for j in jobs],
                            "next_cursor": None})


def wait_batch(c: Base, batch: Batch | str, timeout_s: float | None = None, poll_s: float = 1.0,
               on_update: Callable[[Batch], None] | None = None) -> Flow[Batch]:
    """Poll until every job of the batch finished; `on_update` (a plain function) sees each status read."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        current = yield from batch_status(c, batch)
        if on_update:
            on_update(current)
        if current.done:
            return current
        if deadline is not None and time.monotonic() > deadline:
            raise errors.WaitTimeout(f"batch {current.id}: {current.counts.finished}/{current.total} finished")
        yield Sleep(poll_s)


def export(c: Base, batch: Batch | str, format: str = "coco") -> Flow[dict[str, Any] | bytes]:  # noqa: A002
    """A finished batch as a dataset (`GET /v1/batches/<id>/export`): "coco" gives the COCO instances file
    parsed, "yolo" the YOLO-seg zip's bytes (labels/<stem>.txt, data.yaml, info.json). Raises NotFinished
    while any of its jobs has not ended."""
    response = yield from send(c, "GET", f"/v1/batches/{_ref(batch)}/export", params={"format": format})
    return response.json() if format == "coco" else response.content


def cancel_batch(c: Base, batch: Batch | str) -> Flow[Batch]:
    """Cancel every job of the batch that has not finished."""
    return Batch.from_dict((yield from send(c, "POST", f"/v1/batches/{_ref(batch)}/cancel")).json())


# -- account -----------------------------------------------------------------------------------------------------

def credits(c: Base) -> Flow[Credits]:
    """The caller's balance."""
    return Credits.from_dict((yield from send(c, "GET", "/v1/credits")).json())


def webhook_secret(c: Base) -> Flow[str]:
    """The key's webhook signing secret (`whsec_...`), to give `verify_webhook`."""
    return (yield from send(c, "GET", "/v1/webhooks/secret")).json()["secret"]


# -- the methods -------------------------------------------------------------------------------------------------

class Api:
    """Every call of the API as a method, written once for both clients (see `FlowMethod`)."""

    submit = FlowMethod(submit)
    get = FlowMethod(get)
    wait = FlowMethod(wait)
    result = FlowMethod(result)
    cancel = FlowMethod(cancel)
    segment = FlowMethod(segment)
    sam_v2_image = FlowMethod(sam_v2_image)
    submit_batch = FlowMethod(submit_batch)
    get_batch = FlowMethod(get_batch)
    batch_status = FlowMethod(batch_status)
    wait_batch = FlowMethod(wait_batch)
    export = FlowMethod(export)
    cancel_batch = FlowMethod(cancel_batch)
    credits = FlowMethod(credits)
    webhook_secret = FlowMethod(webhook_secret)
    verify_webhook = staticmethod(verify_webhook)
