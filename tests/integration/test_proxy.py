"""The buffering proxy (deploy/nginx/samq.conf, as compose and Kubernetes ship it) in front of a real gunicorn
gateway: slow clients wait in nginx, never in one of the gateway's threads.

nginx is Debian's (`.ci/run` installs it), started with the shipped file included as the official image includes
it (deploy/validate.py nginx_config: only the upstream and listen addresses are changed, to loopback ports).
The gateway is the `bare` stack's: one gunicorn process of 8 threads, as bench/slowloris.py measures.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from harness.procs import free_port, start, stop, wait_until

_spec = importlib.util.spec_from_file_location("deploy_validate", Path(__file__).parents[2] / "deploy" / "validate.py")
validate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(validate)
NGINX = validate.nginx_binary()
pytestmark = pytest.mark.skipif(NGINX is None, reason="no nginx binary here: install Debian's `nginx` "
                                                      "(.ci/run does) to run the proxy tests")

SLOW_HEADERS = 200   # request heads sent up to the last header, never the blank line that ends them
SLOW_BODIES = 20     # whole heads, then a few bytes of a 1000-byte body: more than the gateway's 8 threads
CLIENT_TIMEOUT_S = 10  # client_header_timeout / client_body_timeout in samq.conf (tests/deploy/test_kubernetes.py)


@contextmanager
def _nginx(upstream_port: int, log: Path) -> Iterator[str]:
    """nginx running the shipped config in front of 127.0.0.1:upstream_port; its base URL. Access log: `log`."""
    # Worker processes run as `nobody` when the tests run as root: they must reach the temp folders.
    workdir = Path(tempfile.mkdtemp(prefix="samq-nginx-"))
    workdir.chmod(0o755)
    url = f"http://127.0.0.1:{free_port()}"
    main = validate.nginx_config(workdir, upstream=f"127.0.0.1:{upstream_port}", listen=url[7:])
    proc = start([NGINX, "-e", str(workdir / "error.log"), "-c", str(main), "-g", "daemon off;"], {}, log)
    try:
        wait_until(lambda: proc.poll() is None and requests.get(url + "/nginx-healthz", timeout=1).ok, 20,
                   f"nginx (see {workdir}/error.log)")
        yield url
    finally:
        stop(proc)
        shutil.copy(workdir / "error.log", log.with_suffix(".error.log"))
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def proxy(bare) -> Iterator[str]:
    """nginx in front of the `bare` gateway; its stdout (the access log: access_log /dev/stdout) is nginx.log."""
    with _nginx(int(bare.env["SAMQ_PORT"]), bare.logs / "nginx.log") as url:
        yield url


def _open_slow(addr: tuple[str, int], keys: list[str]) -> tuple[list[socket.socket], float]:
    """SLOW_HEADERS + SLOW_BODIES connections left hanging; and when the last one sent its last byte.

    Each slow body comes with a key of its own, so that the per-key rate limit lets it through to the point
    where a gateway thread reads the body (where it would wait, were nginx not buffering it).
    """
    socks = []
    for _ in range(SLOW_HEADERS):
        sock = socket.create_connection(addr, timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: samq\r\nx-slow: 1\r\n")  # no blank line: never finished
        socks.append(sock)
    for key in keys:
        sock = socket.create_connection(addr, timeout=5)
        sock.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: samq\r\nx-api-key: " + key.encode()
                     + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"image\": \"")
        socks.append(sock)
    return socks, time.monotonic()


def _timed_get(url: str, **kw) -> tuple[requests.Response, float]:
    start_s = time.monotonic()
    response = requests.get(url, timeout=10, **kw)
    return response, time.monotonic() - start_s


def test_slow_clients_wait_in_nginx_and_the_gateway_keeps_answering(bare, proxy):
    key = bare.new_key(5)
    body_keys = [bare.new_key(1) for _ in range(SLOW_BODIES)]
    host, port = proxy[7:].split(":")
    slow, sent_at = _open_slow((host, int(port)), body_keys)
    try:
        time.sleep(1)  # as bench/slowloris.py: every slow connection accepted and read
        health, health_s = _timed_get(proxy + "/healthz")
        assert health.status_code == 200 and health_s < 1, (health.status_code, health_s)
        credits, credits_s = _timed_get(proxy + "/v1/credits", headers={"x-api-key": key, "x-request-id": "t-1.a"})
        assert credits.status_code == 200 and credits_s < 1, (credits.status_code, credits_s)
        assert credits.json()["credits"] == 5
        assert credits.headers["x-request-id"] == "t-1.a", "the client's request id reaches the gateway"
        assert credits.headers["x-remaining-credits"] == "5"

        # Without the proxy the same slow heads take every gateway thread (the control: bench/slowloris.py).
        direct, _ = _open_slow(("127.0.0.1", int(bare.env["SAMQ_PORT"])), body_keys)
        try:
            time.sleep(1)
            with pytest.raises(requests.Timeout):
                requests.get(bare.url + "/healthz", timeout=2)
        finally:
            for sock in direct:
                sock.close()
        wait_until(lambda: requests.get(bare.url + "/healthz", timeout=1).ok, 10, "the gateway to recover")

        # nginx itself ends the slow connections once client_header_timeout / client_body_timeout pass.
        for sock in slow:
            sock.settimeout(max(0.1, sent_at + CLIENT_TIMEOUT_S + 5 - time.monotonic()))
            answer = b""
            while chunk := sock.recv(65536):  # socket.timeout here: a connection nginx kept past its timeout
                answer += chunk
            assert b"x-remaining-credits" not in answer.lower(), "a slow request reached the gateway"
        assert time.monotonic() - sent_at < CLIENT_TIMEOUT_S + 5
    finally:
        for sock in slow:
            sock.close()
    # None of them was handed to the gateway: nginx logged each as timed out (408) without an upstream.
    def timed_out() -> list[str]:
        lines = (bare.logs / "nginx.log").read_text().splitlines()
        return [line for line in lines if '" 408 ' in line and " upstream=- " in line]

    wait_until(lambda: len(timed_out()) >= SLOW_HEADERS + SLOW_BODIES, 5, "nginx's 408 log lines")
    assert len(timed_out()) == SLOW_HEADERS + SLOW_BODIES
    assert bare.balance(key) == 5 and {bare.balance(k) for k in body_keys} == {1}


def test_request_ids_and_the_body_limit(bare, proxy):
    # No id from the client: nginx makes one, logs it, and the gateway answers with that same id.
    response = requests.get(proxy + "/healthz", timeout=10)
    rid = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid), rid
    wait_until(lambda: f"request_id={rid}" in (bare.logs / "nginx.log").read_text(), 5, "nginx's log line")
    # An id the gateway would refuse is replaced by nginx's, so both logs still agree.
    odd = requests.get(proxy + "/healthz", headers={"x-request-id": "no spaces allowed"}, timeout=10)
    assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["x-request-id"])

    # A body over the gateway's own limit is refused by nginx before it is sent, in the gateway's JSON shape.
    limit = int(re.search(r"client_max_body_size (\d+);", validate.NGINX_CONF.read_text()).group(1))
    with socket.create_connection(("127.0.0.1", int(proxy.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(f"POST /v1/jobs HTTP/1.1\r\nHost: samq\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {limit + 1}\r\n\r\n".encode())
        head, _, body = sock.recv(65536).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"application/json" in head and b"x-request-id" in head.lower()
    assert b'"code": "too_large"' in body and str(limit).encode() in body


def test_a_gateway_that_is_down_is_a_json_502(tmp_path):
    with _nginx(free_port(), tmp_path / "nginx.log") as url:
        response = requests.post(url + "/v1/jobs", json={"image": "x"}, timeout=10)
    assert response.status_code == 502 and response.headers["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "unavailable"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
