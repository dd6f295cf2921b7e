"""An httpx transport for the AsyncClient tests (unit and integration): it records every request, and can lose the
answer of chosen ones the way a read timeout does, after the server acted on them."""

from __future__ import annotations

from collections.abc import Callable

import httpx


class LosesAnswers(httpx.AsyncHTTPTransport):
    """Sends each request for real; `kind(request)` names the requests whose answer is lost (None: keep it), and the
    first answer of each kind is read, dropped and raised as a ReadTimeout, so its resend gets through. `seen`
    lists (method, path) of everything sent."""

    def __init__(self, kind: Callable[[httpx.Request], str | None]) -> None:
        super().__init__()
        self.kind = kind
        self.lost: set[str] = set()
        self.seen: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send; lose the answer if it is the first of its kind."""
        self.seen.append((request.method, request.url.path))
        response = await super().handle_async_request(request)
        kind = self.kind(request)
        if kind is not None and kind not in self.lost:
            self.lost.add(kind)
            await response.aread()
            await response.aclose()
            raise httpx.ReadTimeout("read timed out (the answer was lost)", request=request)
        return response
