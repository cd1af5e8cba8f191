"""Redirect rules as pure functions: request + 3xx response -> next request."""

from __future__ import annotations

import pytest

from aioduct import Headers, RedirectError, Request, Response
from aioduct.redirects import next_request


def _req(method: str = "POST", url: str = "http://a.test/start", **headers: str) -> Request:
    h = Headers({"Host": "a.test", "Content-Type": "text/plain", "Content-Length": "4", **headers})
    return Request(method, url, headers=h, content=b"body")


def _resp(status: int, location: str | None) -> Response:
    h = Headers({"Location": location} if location is not None else {})
    return Response(status, headers=h)


@pytest.mark.parametrize("status", [301, 302, 303])
def test_post_becomes_get_without_body_or_content_headers(status: int) -> None:
    nxt = next_request(_req(), _resp(status, "/next"))
    assert nxt.method == "GET"
    assert nxt.content is None
    assert "content-type" not in nxt.headers and "content-length" not in nxt.headers
    assert str(nxt.url) == "http://a.test/next"


@pytest.mark.parametrize("status", [307, 308])
def test_307_308_keep_method_and_body(status: int) -> None:
    nxt = next_request(_req(), _resp(status, "/next"))
    assert (nxt.method, nxt.content) == ("POST", b"body")
    assert nxt.headers["content-type"] == "text/plain"


def test_head_stays_head_on_303() -> None:
    assert next_request(_req("HEAD"), _resp(303, "/x")).method == "HEAD"


def test_credentials_are_stripped_across_origins_only() -> None:
    secret = {"Authorization": "Bearer t", "Cookie": "s=1", "Proxy-Authorization": "Basic x"}
    same = next_request(_req("GET", **secret), _resp(302, "/elsewhere"))
    assert same.headers["authorization"] == "Bearer t"
    for target in ("http://b.test/x", "https://a.test/x", "http://a.test:8080/x"):
        cross = next_request(_req("GET", **secret), _resp(302, target))
        for name in secret:
            assert name not in cross.headers, (target, name)
        assert cross.headers["host"] == cross.url.host_header


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("ftp://a.test/file", "refusing to follow 302 redirect to 'ftp://a.test/file'"),
        ("javascript:alert(1)", "refusing to follow"),
        (None, "302 redirect without a Location header"),
        ("   ", "302 redirect with an empty Location header"),
    ],
)
def test_unfollowable_targets_raise(location: str | None, message: str) -> None:
    with pytest.raises(RedirectError, match=message) as caught:
        next_request(_req("GET"), _resp(302, location))
    assert (caught.value.method, caught.value.url) == ("GET", str(_req("GET").url))


def test_https_only_refuses_downgrade() -> None:
    req = Request("GET", "https://a.test/", headers=Headers({"Host": "a.test"}))
    with pytest.raises(RedirectError, match="https_only"):
        next_request(req, _resp(301, "http://a.test/"), https_only=True)


def test_referer_is_set_without_credentials_and_not_on_downgrade() -> None:
    req = Request("GET", "https://u:p@a.test/page#frag", headers=Headers({"Host": "a.test"}))
    nxt = next_request(req, _resp(302, "/next"), referer=True)
    assert nxt.headers["referer"] == "https://a.test/page"
    down = next_request(req, _resp(302, "http://a.test/next"), referer=True)
    assert "referer" not in down.headers


def test_fragment_carries_over_when_location_has_none() -> None:
    req = Request("GET", "http://a.test/x#sec", headers=Headers())
    assert next_request(req, _resp(302, "/y")).url.fragment == "sec"
    assert next_request(req, _resp(302, "/y#other")).url.fragment == "other"


def test_streamed_body_cannot_be_replayed_for_307() -> None:
    async def gen():  # pragma: no cover - never iterated
        yield b"x"

    req = Request("PUT", "http://a.test/", headers=Headers(), stream=gen())
    with pytest.raises(RedirectError, match="cannot repeat a one-shot streamed request body"):
        next_request(req, _resp(307, "/again"))
