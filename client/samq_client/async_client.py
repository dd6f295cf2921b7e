"""`AsyncClient`: the same API as `Client`, awaited (httpx): `async with AsyncClient() as c: await c.wait(job)`.

The calls are the flows of `samq_client._core`, shared with the sync client: same arguments, records, errors and
retry policy; only the sending (httpx) and the waiting (`asyncio.sleep`) are this module's."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx

from samq_client import _core

# What cannot have reached the server: no connection was made (or none was free in the pool).
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# A failure to get an answer, the counterpart of requests' ConnectionError and Timeout; RemoteProtocolError is a
# server that hung up without answering.
_NO_ANSWER = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class AsyncClient(_core.Api, _core.Awaiting):
    """A samq API client for asyncio: `Client`'s methods, awaited. `url` and `api_key` default to `SAMQ_URL` and
    `SAMQ_API_KEY`; `http_client` is an `httpx.AsyncClient` of your own (closed with this one)."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout_s: float = 120,
                 max_retries: int = 5, backoff_s: float = 0.5, http_client: httpx.AsyncClient | None = None) -> None:
        super().__init__(url, api_key, timeout_s, max_retries, backoff_s)
        # requests follows redirects by default, httpx does not: follow them, as the sync client does.
        self.http_client = http_client or httpx.AsyncClient(follow_redirects=True)

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self.http_client.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _drive(self, flow: _core.Flow[_core.T]) -> _core.T:
        """Run a flow: send its requests with httpx, sleep its waits without blocking the event loop."""
        steps = _core.Stepper(flow)
        while (step := steps.next()) is not None:
            if isinstance(step, _core.Sleep):
                await asyncio.sleep(step.seconds)
                continue
            with steps.answering(_NO_ANSWER, lambda exc: not isinstance(exc, _NOT_SENT)):
                steps.value = await self.http_client.request(step.method, step.url, json=step.json,
                                                             params=step.params, headers=step.headers,
                                                             timeout=self.timeout_s)
        return steps.result

    async def request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                      headers: Mapping[str, str] | None = None, idempotent: bool = True) -> httpx.Response:
        """One API call, retried where that is safe (see `samq_client._core.request`); errors as named exceptions."""
        return await self._drive(_core.request(self, method, path, json=json, params=params, headers=headers,
                                               idempotent=idempotent))
