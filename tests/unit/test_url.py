"""URL parsing: what is accepted, how it is normalised, and how refusals read."""

from __future__ import annotations

import re

import pytest

from aioduct import URL, InvalidURL


@pytest.mark.parametrize(
    ("text", "scheme", "host", "port", "target", "host_header"),
    [
        ("http://example.com", "http", "example.com", 80, "/", "example.com"),
        ("HTTPS://Example.COM/a/b?x=1", "https", "example.com", 443, "/a/b?x=1", "example.com"),
        ("http://127.0.0.1:8080/p", "http", "127.0.0.1", 8080, "/p", "127.0.0.1:8080"),
        ("https://example.com:443/", "https", "example.com", 443, "/", "example.com"),
        ("http://[::1]:8080/x", "http", "::1", 8080, "/x", "[::1]:8080"),
        ("http://[2001:DB8::1]/", "http", "2001:db8::1", 80, "/", "[2001:db8::1]"),
        (
            "http://bücher.example/",
            "http",
            "xn--bcher-kva.example",
            80,
            "/",
            "xn--bcher-kva.example",
        ),
        ("http://h/a b?q=a b", "http", "h", 80, "/a%20b?q=a%20b", "h"),
        ("http://h/%7Euser", "http", "h", 80, "/%7Euser", "h"),
    ],
)
def test_parse(text: str, scheme: str, host: str, port: int, target: str, host_header: str) -> None:
    url = URL(text)
    assert (url.scheme, url.host, url.port, url.target, url.host_header) == (
        scheme,
        host,
        port,
        target,
        host_header,
    )
    assert URL(str(url)) == url


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "example.com/x",
            "missing scheme in 'example.com/x' (did you mean 'http://example.com/x'?)",
        ),
        ("ftp://example.com/", "unsupported scheme 'ftp'"),
        ("http://", "missing host"),
        ("http://h:99999/", "invalid port '99999'"),
        ("http://h:x/", "invalid port 'x'"),
        ("http://h/\r\nX: y", "control character"),
        ("http://[::1/", "cannot parse URL 'http://[::1/': Invalid IPv6 URL"),
        ("http://a b/", "invalid host"),
    ],
)
def test_refusals_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(InvalidURL, match=re.escape(message)):
        URL(text)


def test_invalid_url_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        URL("nope")


def test_userinfo_is_kept_out_of_redacted_form() -> None:
    url = URL("https://user:s3cret@example.com/x")
    assert (url.username, url.password) == ("user", "s3cret")
    assert "s3cret" not in url.redacted()
    assert "s3cret" not in repr(url)


def test_join_resolves_relative_references() -> None:
    base = URL("http://a/b/c/d;p?q")
    assert str(base.join("g")) == "http://a/b/c/g"
    assert str(base.join("/g")) == "http://a/g"
    assert str(base.join("//other/x")) == "http://other/x"
    assert str(base.join("../g")) == "http://a/b/g"
    assert str(base.join("?y")) == "http://a/b/c/d;p?y"


def test_with_params_appends_and_encodes() -> None:
    url = URL("http://h/s?a=1")
    assert url.with_params({"q": "hello world", "n": [1, 2], "empty": None}).target == (
        "/s?a=1&q=hello%20world&n=1&n=2&empty="
    )
    assert URL("http://h/s").with_params([("q", None), ("r", [None, 1])]).target == "/s?q=&r=&r=1"
    assert URL("http://h/s").with_params([("flag", True)]).target == "/s?flag=true"


def test_origin_and_equality() -> None:
    assert URL("http://h/a").origin == URL("http://h:80/b").origin
    assert URL("http://h/a").origin != URL("https://h/a").origin
    assert URL("http://h/a") == "http://h/a"
    assert hash(URL("http://h/a")) == hash(URL("http://h/a"))
