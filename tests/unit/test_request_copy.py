"""Request.copy_with: layers copy requests; a copy must keep every field it does not
replace (a forgotten body, auth or expect flag sends a different request)."""

from __future__ import annotations

import pytest

import aioduct
from aioduct.headers import Headers
from aioduct.models import Request
from aioduct.url import URL


def test_copy_keeps_every_field() -> None:
    auth = aioduct.DigestAuth("u", "p")
    request = Request(
        "PUT",
        "https://example.com/a",
        headers=Headers([("X-A", "1")]),
        content=b"body",
        version="2",
        expect_continue=True,
        auth=auth,
    )
    copy = request.copy_with(headers=Headers([("X-B", "2")]))
    assert copy is not request
    assert (copy.method, str(copy.url), copy.content, copy.version) == (
        "PUT", "https://example.com/a", b"body", "2",
    )  # fmt: skip
    assert copy.expect_continue is True and copy.auth is auth
    assert copy.headers.multi_items() == [("X-B", "2")]
    moved = request.copy_with(url=URL("https://example.org/b"), expect_continue=False)
    assert str(moved.url) == "https://example.org/b" and moved.expect_continue is False
    assert moved.headers is request.headers and moved.content == b"body"


def test_copy_is_checked_like_a_new_request() -> None:
    request = Request("GET", "http://example.com/")
    with pytest.raises(aioduct.LocalProtocolError):
        request.copy_with(headers=Headers([("X-Bad", "a\r\nb")]))
    with pytest.raises(ValueError, match="version must be"):
        request.copy_with(version="4")
