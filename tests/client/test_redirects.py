"""Redirects end to end against nginx (two origins for cross-origin rules)."""

from __future__ import annotations

import pytest

import aioduct
from aioduct.testing.nginx import Nginx

pytestmark = pytest.mark.nginx


def echo(text: str) -> dict[str, str]:
    return dict(line.partition(": ")[::2] for line in text.splitlines())


@pytest.mark.parametrize(
    ("status", "method"), [(301, "GET"), (302, "GET"), (303, "GET"), (307, "POST"), (308, "POST")]
)
async def test_method_rewrite(nginx: Nginx, status: int, method: str) -> None:
    async with aioduct.Client() as client:
        r = await client.post(f"{nginx.http_url}/redirect/{status}/echo/headers", content=b"abc")
    seen = echo(r.text)
    assert seen["method"] == method
    assert seen["content-length"] == ("3" if method == "POST" else "")
    assert [h.status for h in r.history] == [status]
    assert str(r.url) == nginx.http_url + "/echo/headers"
    assert str(r.history[0].url) == f"{nginx.http_url}/redirect/{status}/echo/headers"


async def test_chain_and_history(nginx: Nginx) -> None:
    async with aioduct.Client() as client:
        r = await client.get(nginx.http_url + "/chain/5")
    assert r.text == "done" and len(r.history) == 5
    assert [str(h.url).rsplit("/", 1)[1] for h in r.history] == ["5", "4", "3", "2", "1"]


async def test_too_many_redirects(nginx: Nginx) -> None:
    async with aioduct.Client(max_redirects=3) as client:
        with pytest.raises(aioduct.TooManyRedirects, match="max_redirects=3") as info:
            await client.get(nginx.http_url + "/chain/10")
        assert len(info.value.history) == 4
        with pytest.raises(aioduct.TooManyRedirects):
            await client.get(nginx.http_url + "/loop")
        # the pool survived: nothing leaked, next request works
        assert (await client.get(nginx.http_url + "/small")).status == 200
        assert client._engine.pool is not None and client._engine.pool.open_connections == 1


async def test_not_following(nginx: Nginx) -> None:
    async with aioduct.Client(follow_redirects=False) as client:
        r = await client.get(nginx.http_url + "/redirect/302/small")
        assert r.status == 302 and r.headers["location"].endswith("/small") and r.is_redirect
        r = await client.get(nginx.http_url + "/redirect/302/small", follow_redirects=True)
        assert r.content == b"Hello, World!"
    async with aioduct.Client(max_redirects=0) as zero:
        with pytest.raises(aioduct.TooManyRedirects):
            await zero.get(nginx.http_url + "/redirect/302/small")


async def test_credentials_do_not_cross_origins(nginx: Nginx) -> None:
    headers = {"Cookie": "session=1", "Proxy-Authorization": "Basic eA=="}
    async with aioduct.Client(auth=("user", "pass")) as client:
        same = echo(
            (await client.get(nginx.http_url + "/redirect/302/echo/headers", headers=headers)).text
        )
        assert same["authorization"].startswith("Basic ") and same["cookie"] == "session=1"
        r = await client.get(nginx.http_url + "/cross/302/echo/headers", headers=headers)
        assert r.url.origin != r.history[0].url.origin
        cross = echo(r.text)
        assert (
            cross["authorization"] == ""
            and cross["cookie"] == ""
            and cross["proxy-authorization"] == ""
        )


async def test_referer(nginx: Nginx) -> None:
    async with aioduct.Client(referer=True) as client:
        r = await client.get(nginx.http_url + "/redirect/302/echo/headers")
    assert echo(r.text)["referer"] == nginx.http_url + "/redirect/302/echo/headers"


async def test_refused_targets(nginx: Nginx) -> None:
    async with aioduct.Client() as client:
        with pytest.raises(
            aioduct.RedirectError, match="refusing to follow 302 redirect to 'ftp://"
        ):
            await client.get(nginx.http_url + "/redirect-scheme")


async def test_a_3xx_without_location_is_returned_and_an_empty_one_refused(
    nginx: Nginx,
) -> None:
    # docs/redirects.md: returned as is, as curl and httpx do; an empty Location is an error.
    async with aioduct.Client() as client:
        r = await client.get(nginx.http_url + "/redirect-missing")
        assert (r.status, r.history, r.text) == (302, [], "no location")
        with pytest.raises(aioduct.RedirectError, match="302 redirect with an empty Location"):
            await client.get(nginx.http_url + "/redirect-empty")


async def test_custom_policy(nginx: Nginx) -> None:
    seen: list[tuple[str, str, int, str]] = []

    def policy(current: aioduct.URL, target: aioduct.URL, status: int, method: str) -> bool:
        seen.append((current.path, target.path, status, method))
        return target.path != "/chain/2"

    async with aioduct.Client(redirect_policy=policy) as client:
        r = await client.get(nginx.http_url + "/chain/4")
    assert r.status == 302 and len(r.history) == 1
    assert seen == [("/chain/4", "/chain/3", 302, "GET"), ("/chain/3", "/chain/2", 302, "GET")]
    async with aioduct.Client(redirect_policy=aioduct.same_origin_only) as client:
        r = await client.get(nginx.http_url + "/cross/302/small")
        assert r.status == 302
