"""The send engine against a real nginx on loopback (HTTP/1.1, plain)."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest

import aioduct
from aioduct.testing.nginx import Nginx, deterministic_bytes

pytestmark = pytest.mark.nginx


def marker() -> str:
    return uuid.uuid4().hex[:12]


def connections_for(nginx: Nginx, since: int, tag: str, expected: int) -> set[int]:
    """The nginx connection serials that served the requests tagged ``tag``."""
    entries = nginx.requests_log(since=since, uri_contains=tag, min_entries=expected)
    assert len(entries) == expected
    return {e.connection for e in entries}


def echo(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        out[name] = value
    return out


async def test_get_small(nginx: Nginx) -> None:
    async with aioduct.Client() as client:
        r = await client.get(nginx.http_url + "/small")
    assert (r.status, r.status_code, r.reason, r.http_version) == (200, 200, "OK", "HTTP/1.1")
    assert r.content == b"Hello, World!"
    assert r.text == "Hello, World!"
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["Content-Length"] == "13"
    assert str(r.url) == nginx.http_url + "/small"
    assert r.history == []
    t = r.timings
    assert t.connect is not None and t.dns is None and t.tls is None and t.pool_wait is None
    assert t.ttfb is not None and 0 < t.ttfb <= t.total


def test_get_small_on_uvloop(nginx: Nginx) -> None:
    async def main() -> aioduct.Response:
        async with aioduct.Client() as client:
            assert client._engine._bind()[0].name == "uvloop"
            return await client.get(nginx.http_url + "/small")

    assert aioduct.run(main()).content == b"Hello, World!"


async def test_text_decoding_follows_charset(nginx: Nginx) -> None:
    async with aioduct.Client() as client:
        assert (await client.get(nginx.http_url + "/text")).text == "héllo wörld ✓"
        latin = await client.get(nginx.http_url + "/latin1")
        assert latin.encoding == "iso8859-1" and latin.text == "café"


async def test_json_decoding_with_and_without_a_type(nginx: Nginx) -> None:
    class Message(msgspec.Struct):
        message: str
        count: int

    async with aioduct.Client() as client:
        r = await client.get(nginx.http_url + "/json")
    assert r.json() == {"message": "hello", "count": 42}
    assert r.json(type=Message) == Message("hello", 42)
    with pytest.raises(aioduct.DecodeError, match="not valid JSON"):
        aioduct.Response(200, content=b"<html>").json()


async def test_request_bodies(nginx: Nginx) -> None:
    async with aioduct.Client() as client:
        assert (
            await client.post(nginx.http_url + "/post", content=b"x" * 4096)
        ).text == "POST 4096"
        assert (await client.put(nginx.http_url + "/post", content="é")).text == "PUT 2"

        async def chunks():
            for _ in range(4):
                yield b"y" * 1000

        streamed = await client.post(nginx.http_url + "/echo/headers", content=chunks())
        assert echo(streamed.text)["transfer-encoding"] == "chunked"
        r = await client.post(nginx.http_url + "/echo/headers", json={"a": [1, 2]})
        seen = echo(r.text)
        assert seen["content-type"] == "application/json" and seen["content-length"] == "11"
        r = await client.post(nginx.http_url + "/echo/headers", data={"q": "a b", "n": 1})
        seen = echo(r.text)
        assert seen["content-type"] == "application/x-www-form-urlencoded"
        assert seen["content-length"] == str(len("q=a%20b&n=1"))
        big = await client.post(nginx.http_url + "/post", content=bytes(3 * 1024 * 1024))
        assert big.text == f"POST {3 * 1024 * 1024}"


async def test_default_and_custom_headers(nginx: Nginx) -> None:
    async with aioduct.Client(headers={"X-Test": "client"}) as client:
        seen = echo(
            (await client.get(nginx.http_url + "/echo/headers?a=1", params={"b": "x y"})).text
        )
        assert seen["user-agent"] == f"aioduct/{aioduct.__version__}"
        assert seen["accept"] == "*/*"
        assert seen["x-test"] == "client"
        assert seen["uri"] == "/echo/headers?a=1&b=x%20y"
        assert seen["host"] == nginx.http_url.split("//")[1]  # host:port, port not default
        seen = echo(
            (
                await client.get(
                    nginx.http_url + "/echo/headers", headers={"x-test": "req", "User-Agent": "me"}
                )
            ).text
        )
        assert seen["x-test"] == "req" and seen["user-agent"] == "me"
    async with aioduct.Client(default_headers=False) as bare:
        seen = echo((await bare.get(nginx.http_url + "/echo/headers")).text)
        assert seen["user-agent"] == "" and seen["accept"] == ""


async def test_base_url(nginx: Nginx) -> None:
    async with aioduct.Client(base_url=nginx.http_url + "/bytes") as client:
        assert len((await client.get("/64k")).content) == 65536
        assert len((await client.get("64k")).content) == 65536
        assert (await client.get(nginx.http_url + "/small")).content == b"Hello, World!"


async def test_auth(nginx: Nginx) -> None:
    async with aioduct.Client() as client:
        assert (await client.get(nginx.http_url + "/auth/basic")).status == 401
        assert (
            await client.get(nginx.http_url + "/auth/basic", auth=("user", "pass"))
        ).status == 200
        assert (
            await client.get(nginx.http_url + "/auth/bearer", auth=aioduct.BearerAuth("t0ken"))
        ).status == 200
        with_userinfo = nginx.http_url.replace("http://", "http://user:pass@") + "/auth/basic"
        r = await client.get(with_userinfo)
        assert r.status == 200 and "pass" not in str(r.url)
    async with aioduct.Client(auth=("user", "pass")) as authed:
        assert (await authed.get(nginx.http_url + "/auth/basic")).status == 200


@pytest.mark.parametrize("size", ["64k", "1m", "10m"])
async def test_downloads_are_byte_exact(nginx: Nginx, size: str) -> None:
    n = {"64k": 65536, "1m": 1 << 20, "10m": 10 << 20}[size]
    async with aioduct.Client() as client:
        r = await client.get(f"{nginx.http_url}/bytes/{size}")
    assert r.content == deterministic_bytes(n)


async def test_streaming_reads_and_releases(nginx: Nginx) -> None:
    async with aioduct.Client() as client:
        async with client.stream("GET", nginx.http_url + "/bytes/1m") as r:
            assert not r.is_read
            with pytest.raises(RuntimeError, match="has not been read"):
                _ = r.content
            total = 0
            async for chunk in r.aiter_bytes(chunk_size=10000):
                assert len(chunk) <= 10000
                total += len(chunk)
        assert total == 1 << 20
        pool = client._engine.pool
        assert pool is not None and pool.idle_connections() == 1
        async with client.stream("GET", nginx.http_url + "/bytes/10m") as r:
            first = await r.aiter_bytes().__anext__()
            assert first
        # abandoned half-read: that (reused) connection is closed, not pooled
        assert pool.idle_connections() == 0 and pool.open_connections == 0
        async with client.stream("GET", nginx.http_url + "/text") as r:
            assert [line async for line in r.aiter_lines()] == ["héllo wörld ✓"]
        async with client.stream("GET", nginx.http_url + "/json") as r:
            await r.aread()
            assert r.json()["count"] == 42


async def test_keep_alive_reuses_one_connection(nginx: Nginx) -> None:
    tag = marker()
    since = nginx.log_position()
    async with aioduct.Client() as client:
        for i in range(20):
            r = await client.get(f"{nginx.http_url}/small?{tag}={i}")
            if i:
                assert r.timings.connect is None and r.timings.pool_wait is not None
    assert len(connections_for(nginx, since, tag, 20)) == 1


async def test_no_reuse_when_max_idle_is_zero(nginx: Nginx) -> None:
    tag = marker()
    since = nginx.log_position()
    async with aioduct.Client(pool_max_idle_per_host=0) as client:
        for i in range(5):
            await client.get(f"{nginx.http_url}/small?{tag}={i}")
        assert client._engine.pool is not None and client._engine.pool.open_connections == 0
    assert len(connections_for(nginx, since, tag, 5)) == 5


async def test_concurrency_within_connection_limits(nginx: Nginx) -> None:
    tag = marker()
    since = nginx.log_position()
    async with aioduct.Client(max_connections=5) as client:
        results = await asyncio.gather(
            *(client.get(f"{nginx.http_url}/small?{tag}={i}") for i in range(60))
        )
    assert all(r.content == b"Hello, World!" for r in results)
    assert len(connections_for(nginx, since, tag, 60)) <= 5


async def test_pool_timeout(nginx: Nginx) -> None:
    async with aioduct.Client(max_connections=1, pool_timeout=0.2) as client:
        async with client.stream("GET", nginx.http_url + "/bytes/1m"):
            with pytest.raises(aioduct.PoolTimeout, match="max_connections=1"):
                await client.get(nginx.http_url + "/small")
        assert (await client.get(nginx.http_url + "/small")).status == 200


async def test_connection_close_is_honoured(nginx: Nginx) -> None:
    tag = marker()
    since = nginx.log_position()
    async with aioduct.Client() as client:
        r = await client.get(f"{nginx.http_url}/close?{tag}=1")
        assert r.text == "closing" and r.headers["connection"].lower() == "close"
        assert client._engine.pool is not None and client._engine.pool.open_connections == 0
        await client.get(f"{nginx.http_url}/small?{tag}=2")
    assert len(connections_for(nginx, since, tag, 2)) == 2


@pytest.mark.parametrize(
    ("method", "path"), [("HEAD", "/bytes/64k"), ("GET", "/status/204"), ("GET", "/status/304")]
)
async def test_bodyless_responses_keep_the_connection(nginx: Nginx, method: str, path: str) -> None:
    async with aioduct.Client() as client:
        r = await client.request(method, nginx.http_url + path)
        assert r.content == b""
        if method == "HEAD":
            assert r.headers["content-length"] == "65536"
        again = await client.get(nginx.http_url + "/small")
        assert again.timings.connect is None and again.content == b"Hello, World!"


async def test_raise_for_status(nginx: Nginx) -> None:
    async with aioduct.Client() as client:
        ok = await client.get(nginx.http_url + "/status/201")
        assert ok.raise_for_status() is ok
        for code, kind in ((404, "client error"), (503, "server error")):
            r = await client.get(f"{nginx.http_url}/status/{code}")
            with pytest.raises(aioduct.StatusError, match=kind) as info:
                r.raise_for_status()
            assert info.value.status == code and info.value.response is r
            assert info.value.url == f"{nginx.http_url}/status/{code}"


async def test_connect_errors_are_clear() -> None:
    async with aioduct.Client() as client:
        with pytest.raises(aioduct.ConnectError, match=r"cannot connect to 127\.0\.0\.1:1") as info:
            await client.get("http://127.0.0.1:1/")
        assert info.value.is_connect and not info.value.is_timeout
        assert info.value.url == "http://127.0.0.1:1/"
        with pytest.raises(
            aioduct.ConnectError, match=r"cannot resolve host 'no-such-host\.invalid'"
        ):
            await client.get("http://no-such-host.invalid/")
        with pytest.raises(aioduct.InvalidURL, match="missing scheme"):
            await client.get("example.com/x")


async def test_total_timeout_on_a_slow_body(nginx: Nginx) -> None:
    async with aioduct.Client(timeout=0.3) as client:
        with pytest.raises(aioduct.TotalTimeout, match=r"timeout=0\.3s") as info:
            await client.get(nginx.http_url + "/slow")
        assert info.value.is_timeout
        assert client._engine.pool is not None and client._engine.pool.open_connections == 0
        assert (await client.get(nginx.http_url + "/small", timeout=5)).status == 200


async def test_https_only_refuses_http(nginx: Nginx) -> None:
    async with aioduct.Client(https_only=True) as client:
        with pytest.raises(aioduct.InvalidURL, match="https_only"):
            await client.get(nginx.http_url + "/small")


async def test_client_closed(nginx: Nginx) -> None:
    client = aioduct.Client()
    await client.get(nginx.http_url + "/small")
    await client.aclose()
    with pytest.raises(aioduct.ClientClosed):
        await client.get(nginx.http_url + "/small")
