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


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # IPv4 addresses reached through a NAT64 gateway

# The IANA special-purpose registries, spelled out rather than left to the `ipaddress` tables (which were
# wrong for some ranges before Python 3.11.10), first match wins. Anything else not global is "reserved".
SPECIAL_NETWORKS = tuple((ipaddress.ip_network(net), kind) for net, kind in (
    ("0.0.0.0/32", "unspecified"), ("::/128", "unspecified"),
    ("127.0.0.0/8", "loopback"), ("::1/128", "loopback"),
    ("169.254.0.0/16", "link-local"), ("fe80::/10", "link-local"),  # 169.254.169.254: cloud metadata
    ("224.0.0.0/4", "multicast"), ("ff00::/8", "multicast"),
    ("100.64.0.0/10", "shared"),  # carrier-grade NAT; Alibaba Cloud's metadata is 100.100.100.200
    ("10.0.0.0/8", "private"), ("172.16.0.0/12", "private"), ("192.168.0.0/16", "private"),
    ("fc00::/7", "private"), ("fec0::/10", "private"),
    ("0.0.0.0/8", "reserved"), ("192.0.0.0/24", "reserved"), ("192.0.2.0/24", "reserved"),
    ("192.88.99.0/24", "reserved"), ("198.18.0.0/15", "reserved"), ("198.51.100.0/24", "reserved"),
    ("203.0.113.0/24", "reserved"), ("240.0.0.0/4", "reserved"),  # includes 255.255.255.255
    ("100::/64", "reserved"), ("2001::/23", "reserved"), ("2001:db8::/32", "reserved"), ("3fff::/20", "reserved"),
    ("5f00::/16", "reserved"),
))


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, in any spelling a C resolver accepts, else None (a DNS name).

    inet_aton reads what browsers and libc read: 2130706433, 0x7f.1, 0177.0.0.1, 127.1 are all 127.0.0.1.
    """
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, UnicodeError, ValueError):
        return None


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.packed[:12] == bytes(12) and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(ip))
    return None


def address_kind(address: str | IPAddress) -> str:
    """What an address is: 'public', or why it may not be fetched (loopback, private, link-local, ...).

    Addresses that carry an IPv4 address (mapped, 6to4, NAT64, IPv4-compatible) are judged by it.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    ip = _embedded_ipv4(ip) or ip
    for network, kind in SPECIAL_NETWORKS:
        if ip.version == network.version and ip in network:
            return kind
    return "public" if ip.is_global else "reserved"


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
    literal = literal_address(host)
    if literal is not None:  # an address in any spelling: judged as it is, no resolver involved
        addresses = [str(literal)]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise FetchFailed(f"'{field}': cannot resolve the host {host!r}") from exc
        # str(): typeshed allows the (int, bytes) address of other families; IPv4 and IPv6 ones start with a str
        addresses = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
    allowed = host in allow_hosts or f"{host}:{port}" in allow_hosts
    if not allowed:
        for address in addresses:  # every answer: a name resolving to one private address among public ones
            if (kind := address_kind(address)) != "public":
                raise UrlNotAllowed(f"'{field}': host {host!r} is a {kind} address ({address}); only public "
                                    "addresses may be fetched")
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
