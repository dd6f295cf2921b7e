"""SSRF-safe fetching of image URLs: public addresses only, pinned IP, size and time caps."""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3

from shared.errors import FetchFailed, InvalidRequest, TooLarge, UrlNotAllowed

MAX_REDIRECTS = 3


@dataclass(frozen=True)
class Target:
    """A checked URL and the address we will connect to."""

    scheme: str
    host: str
    port: int
    address: str
    path: str

    @property
    def host_header(self) -> str:
        """The Host header for this URL (the port only when it is not the scheme's default)."""
        default_port = 443 if self.scheme == "https" else 80
        return self.host if self.port == default_port else f"{self.host}:{self.port}"


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, allow_hosts: frozenset[str] = frozenset(), field: str = "image") -> Target:
    """Parse and resolve a URL; refuse anything but http(s) to public addresses (unless allow-listed).

    `field` names the request field in error messages (image URLs and webhook URLs share this guard).
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"'{field}' is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"'{field}' must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise UrlNotAllowed(f"'{field}': URLs may not carry credentials")
    host = parts.hostname.lower()
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchFailed(f"'{field}': cannot resolve the host {host!r}") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    allowed = host in allow_hosts or f"{host}:{port}" in allow_hosts
    if not allowed:
        bad = [a for a in addresses if not _is_public(a)]
        if bad:
            raise UrlNotAllowed(f"'{field}': host {host!r} resolves to a non-public address ({bad[0]})")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, host, port, addresses[0], path)


def pinned_pool(target: Target, timeout: urllib3.Timeout) -> urllib3.HTTPConnectionPool:
    """A connection pool to the address we checked, not a fresh DNS answer (no DNS rebinding)."""
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            target.address, target.port, timeout=timeout, retries=False, cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(), server_hostname=target.host, assert_hostname=target.host,
        )
    return urllib3.HTTPConnectionPool(target.address, target.port, timeout=timeout, retries=False)


def fetch(url: str, max_bytes: int, timeout_s: float, allow_hosts: frozenset[str] = frozenset()) -> bytes:
    """Download an image URL with every hop checked; raises a SamqError on any refusal or failure."""
    timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s)
    deadline = time.monotonic() + timeout_s * 3  # a whole-download cap: a server dripping bytes is cut off
    for _ in range(MAX_REDIRECTS + 1):
        target = check_url(url, allow_hosts)
        pool = pinned_pool(target, timeout)
        try:
            resp = pool.urlopen(
                "GET", target.path, headers={"Host": target.host_header, "User-Agent": "samq/0.1"},
                redirect=False, preload_content=False, assert_same_host=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise FetchFailed(f"could not fetch the image URL: {exc.__class__.__name__}") from exc
        try:
            if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                url = urljoin(url, resp.headers["Location"])
                continue
            if resp.status != 200:
                raise FetchFailed(f"the image URL answered HTTP {resp.status}")
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise TooLarge(f"the image at the URL is {length} bytes; the limit is {max_bytes}")
            body = bytearray()
            for chunk in resp.stream(64 * 1024):
                body += chunk
                if time.monotonic() > deadline:
                    raise FetchFailed(f"the image URL took longer than {timeout_s * 3:g} s to download")
                if len(body) > max_bytes:
                    raise TooLarge(f"the image at the URL is larger than the limit of {max_bytes} bytes")
            return bytes(body)
        except urllib3.exceptions.HTTPError as exc:
            raise FetchFailed(f"could not fetch the image URL: {exc.__class__.__name__}") from exc
        finally:
            resp.release_conn()
            pool.close()
    raise FetchFailed(f"the image URL redirected more than {MAX_REDIRECTS} times")
