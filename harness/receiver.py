"""A webhook receiver on loopback whose answers a test scripts, recording every request it gets."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook


@dataclass(frozen=True)
class Call:
    """One request the receiver got."""

    at: float  # time.time() when it arrived
    headers: dict[str, str]
    body: bytes

    @property
    def webhook_id(self) -> str:
        """The webhook-id header."""
        return self.headers["webhook-id"]

    def verify(self, secret: str) -> dict:
        """Check the signature with the standardwebhooks package (raises when none matches); the payload."""
        return Webhook(secret).verify(self.body, self.headers)


class Receiver:
    """Answers POST /<name> from a script of answers: an int status, (status, headers) or ("hang", seconds)."""

    def __init__(self) -> None:
        self.scripts: dict[str, list] = {}
        self.calls: dict[str, list[Call]] = defaultdict(list)
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                name = self.path.strip("/")
                with receiver.lock:
                    receiver.calls[name].append(Call(time.time(), {k.lower(): v for k, v in self.headers.items()},
                                                     body))
                    script = receiver.scripts.get(name, [])
                    answer = script.pop(0) if script else 200
                if isinstance(answer, tuple) and answer[0] == "hang":
                    time.sleep(answer[1])
                    answer = 200
                status, headers = answer if isinstance(answer, tuple) else (answer, {})
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str, *script: object) -> str:
        """The URL of a new endpoint answering with `script` in turn, then 200."""
        self.scripts[name] = list(script)
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
