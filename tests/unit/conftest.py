"""Fixtures of the pure suite: a scripted HTTP server for the client SDK's tests."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Scripted(ThreadingHTTPServer):
    """Answers each request with the next scripted (status, headers, body); records what it got."""

    def __init__(self, answers: list[tuple[int, dict, object]]) -> None:
        self.answers, self.seen = list(answers), []
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append((self.command, self.path, dict(self.headers), body, time.monotonic()))
        status, headers, payload = self.server.answers.pop(0)
        if status == 0:  # hang up without answering, as a dying server does
            self.close_connection = True
            return
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in {"content-type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted():
    """make(*answers) starts a Scripted server on loopback; status 0 hangs up without answering."""
    servers = []

    def make(*answers):
        server = Scripted(list(answers))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()
