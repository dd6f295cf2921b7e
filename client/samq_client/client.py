"""`Client`: the samq API from Python, with retries, idempotency keys and typed results (requests; blocking).

Every call is written once in `samq_client._core` as a flow that does no I/O; this module only sends its requests
and sleeps its waits (`AsyncClient` in `samq_client.async_client` runs the same flows with httpx)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

from samq_client import _core
from samq_client._core import DEFAULT_URL, RETRY_STATUSES, Image, Point, encode_image, job_body

__all__ = ["DEFAULT_URL", "RETRY_STATUSES", "Client", "Image", "Point", "encode_image", "job_body"]


def _maybe_sent(exc: requests.RequestException) -> bool:
    """Whether a failed request may have reached the server (anything but a failure to connect)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return not isinstance(reason, NewConnectionError)


class Client(_core.Api, _core.Blocking):
    """A samq API client. `url` and `api_key` default to `SAMQ_URL` and `SAMQ_API_KEY`. Its methods (submit, wait,
    cancel, segment, batches, credits...) are `samq_client._core.Api`'s, shared with `AsyncClient`."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout_s: float = 120,
                 max_retries: int = 5, backoff_s: float = 0.5, session: requests.Session | None = None) -> None:
        super().__init__(url, api_key, timeout_s, max_retries, backoff_s)
        self.session = session or requests.Session()

    def close(self) -> None:
        """Close the HTTP connections."""
        self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drive(self, flow: _core.Flow[_core.T]) -> _core.T:
        """Run a flow: send its requests with the session, sleep its waits."""
        steps = _core.Stepper(flow)
        while (step := steps.next()) is not None:
            if isinstance(step, _core.Sleep):
                time.sleep(step.seconds)
                continue
            with steps.answering((requests.ConnectionError, requests.Timeout), _maybe_sent):
                steps.value = self.session.request(step.method, step.url, json=step.json, params=step.params,
                                                   headers=step.headers, timeout=self.timeout_s)
        return steps.result

    def request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None, idempotent: bool = True) -> requests.Response:
        """One API call, retried where that is safe (see `samq_client._core.request`); errors as named exceptions."""
        return self._drive(_core.request(self, method, path, json=json, params=params, headers=headers,
                                         idempotent=idempotent))
