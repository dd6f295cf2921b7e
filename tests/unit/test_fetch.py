"""URL checks refuse private destinations before any connection is made."""

import pytest

from shared.errors import InvalidRequest, UrlNotAllowed
from shared.fetch import check_url


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/a.jpg", "http://localhost:8000/a.jpg", "http://10.0.0.1/a.jpg", "http://192.168.1.1/",
    "http://172.16.0.5/", "http://169.254.169.254/latest/meta-data/", "http://[::1]/a.jpg", "http://0.0.0.0/",
    "http://[::ffff:127.0.0.1]/", "http://100.64.0.1/", "https://[fe80::1]/",
])
def test_private_and_special_addresses_are_refused(url):
    with pytest.raises(UrlNotAllowed):
        check_url(url)


@pytest.mark.parametrize("url", ["ftp://example.com/a.jpg", "file:///etc/passwd", "http:///a.jpg", "gopher://x",
                                 "http://[bad/"])
def test_bad_schemes_and_shapes(url):
    with pytest.raises(InvalidRequest):
        check_url(url)


def test_credentials_in_urls_are_refused():
    with pytest.raises(UrlNotAllowed):
        check_url("http://user:pw@93.184.216.34/a.jpg")


def test_public_literal_addresses_pass_and_allow_list_is_exact():
    target = check_url("https://93.184.216.34:8443/x.jpg?size=2")
    assert (target.address, target.port, target.path, target.scheme) == ("93.184.216.34", 8443, "/x.jpg?size=2",
                                                                          "https")
    assert check_url("http://127.0.0.1:9000/a.jpg", frozenset({"127.0.0.1:9000"})).address == "127.0.0.1"
    with pytest.raises(UrlNotAllowed):
        check_url("http://127.0.0.1:9001/a.jpg", frozenset({"127.0.0.1:9000"}))


def test_only_public_literal_addresses_are_fetched():
    for public in ("8.8.8.8", "[2606:4700::1111]"):
        assert check_url(f"http://{public}/a.jpg").address == public.strip("[]")
    for address in ("127.0.0.1", "10.1.2.3", "[::1]", "224.0.0.1", "[fd00::1]"):
        with pytest.raises(UrlNotAllowed):
            check_url(f"http://{address}/a.jpg")
