"""The SSRF guard's address classifier, over every spelling of an address; no test connects anywhere private."""

from __future__ import annotations

import pytest

from shared.errors import UrlNotAllowed
from shared.fetch import address_kind, check_url, literal_address

# host as written in a URL -> what the guard must call it
TABLE = [
    # loopback, every IPv4 spelling a C resolver accepts
    ("127.0.0.1", "loopback"), ("2130706433", "loopback"), ("0x7f000001", "loopback"), ("0x7f.1", "loopback"),
    ("0x7f.0.0.1", "loopback"), ("0177.0.0.1", "loopback"), ("0177.1", "loopback"), ("017700000001", "loopback"),
    ("127.1", "loopback"), ("127.0.1", "loopback"), ("127.000.000.001", "loopback"),
    ("0x7F.0x00.0x00.0x01", "loopback"), ("127.255.255.254", "loopback"), ("[::1]", "loopback"),
    ("[0:0:0:0:0:0:0:1]", "loopback"),
    # IPv4 inside IPv6
    ("[::ffff:127.0.0.1]", "loopback"), ("[::ffff:7f00:1]", "loopback"), ("[::ffff:10.0.0.1]", "private"),
    ("[::ffff:169.254.169.254]", "link-local"), ("[::ffff:a9fe:a9fe]", "link-local"),
    ("[64:ff9b::10.0.0.1]", "private"), ("[64:ff9b::7f00:1]", "loopback"),
    ("[2002:7f00:1::]", "loopback"), ("[2002:a00:1::]", "private"),
    ("[::127.0.0.1]", "loopback"), ("[::10.1.2.3]", "private"),
    # unspecified ("this host")
    ("0.0.0.0", "unspecified"), ("0", "unspecified"), ("0x0", "unspecified"), ("[::]", "unspecified"),
    ("[::ffff:0.0.0.0]", "unspecified"),
    # private ranges, in several spellings
    ("10.0.0.1", "private"), ("10.1", "private"), ("167772161", "private"), ("0xa.0.0.1", "private"),
    ("012.0.0.1", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"), ("192.168.0.1", "private"),
    ("3232235521", "private"), ("0xc0.0xa8.0.1", "private"), ("0300.0250.0.1", "private"), ("192.168.1", "private"),
    ("[fd00::1]", "private"), ("[fc00::1]", "private"), ("[fec0::1]", "private"), ("0.1.2.3", "reserved"),
    # carrier-grade NAT (shared address space); Alibaba Cloud's metadata service lives here
    ("100.64.0.1", "shared"), ("100.127.255.254", "shared"), ("100.100.100.200", "shared"),
    # link-local: the cloud metadata address in every spelling
    ("169.254.169.254", "link-local"), ("2852039166", "link-local"), ("0xa9fea9fe", "link-local"),
    ("0xa9.0xfe.0xa9.0xfe", "link-local"), ("0251.0376.0251.0376", "link-local"), ("169.254.43518", "link-local"),
    ("[fe80::1]", "link-local"), ("[fe80::a9fe:a9fe%25eth0]", "link-local"),
    # multicast and broadcast / reserved
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("[ff02::1]", "multicast"),
    ("255.255.255.255", "reserved"), ("240.0.0.1", "reserved"), ("192.0.2.1", "reserved"), ("198.18.0.1", "reserved"),
    ("192.0.0.192", "reserved"), ("192.0.0.9", "reserved"), ("[2001:db8::1]", "reserved"), ("[2001::1]", "reserved"),
    ("[100::1]", "reserved"),
    # public, so a URL may name them (never connected to here)
    ("8.8.8.8", "public"), ("134744072", "public"), ("0x8.0x8.0x8.0x8", "public"), ("93.184.216.34", "public"),
    ("100.63.255.255", "public"), ("100.128.0.1", "public"), ("172.32.0.1", "public"), ("[2606:4700::1111]", "public"),
    ("[::ffff:8.8.8.8]", "public"),
]


@pytest.mark.parametrize(("host", "kind"), TABLE)
def test_address_classifier(host, kind):
    address = literal_address(host.replace("%25", "%"))
    assert address is not None, f"{host} was not read as an address"
    assert address_kind(address) == kind


@pytest.mark.parametrize(("host", "kind"), [row for row in TABLE if row[1] != "public"])
def test_the_guard_refuses_every_non_public_spelling_before_connecting(host, kind):
    with pytest.raises(UrlNotAllowed, match=kind):
        check_url(f"http://{host}:8080/a.jpg")


@pytest.mark.parametrize("host", [h for h, kind in TABLE if kind == "public"])
def test_public_spellings_pass_and_are_pinned_to_the_canonical_address(host):
    target = check_url(f"https://{host}/a.jpg")
    assert target.address == str(literal_address(host))


@pytest.mark.parametrize("name", ["example.com", "localhost", "metadata.google.internal", "1.2.3.4.nip.io", "a-b"])
def test_names_are_not_addresses(name):
    assert literal_address(name) is None  # names go through DNS, and every answer is judged


def test_localhost_by_name_is_refused():
    with pytest.raises(UrlNotAllowed, match="loopback"):
        check_url("http://localhost/a.jpg")
