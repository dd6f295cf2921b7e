"""An httpx transport for the AsyncClient tests (unit and integration): it records every request, and can lose the
answer of chosen ones the way a read timeout does, after the server acted on them."""

from __future__ import annotations

from collections.abc import Callable

import httpx


class LosesAnswers(httpx.AsyncHTTPTransport):
    """Sends each request for real; the first `count` for which `lose(request)` holds get their answer read and
    dropped, and raise ReadTimeout. `seen` lists (method, path) of everything sent."""

    def __init__(self, lose: Callable[[httpx.Request], bool] = lambda request: False, count: int = 1) -> None:
        super().__init__()
        self.lose, self.left = lose, count
        self.seen: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send; lose the answer if chosen."""
        self.seen.append((request.method, request.url.path))
        response = await super().handle_async_request(request)
        if self.left and self.lose(request):
            self.left -= 1
            await response.aread()
            await response.aclose()
            raise httpx.ReadTimeout("read timed out (the answer was lost)", request=request)
        return response
