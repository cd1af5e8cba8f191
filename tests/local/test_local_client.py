"""``Client(engine="local")`` passes the send engine's behavioural tests where they apply.

Each test runs on both engines (``engine`` fixture): the same calls, the same answers, the
same exception types. Pool inspection and redirect ``history`` are send-engine matters
(the local engine keeps both in its workers) and are tested in ``tests/client``.
"""

from __future__ import annotations

import msgspec
import pytest

import aioduct
from aioduct import uring
from aioduct.testing.nginx import Nginx, deterministic_bytes

pytestmark = pytest.mark.nginx


@pytest.fixture(params=["send", "local"])
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "local" and (reason := uring.unavailable_reason()) is not None:
        pytest.skip(reason)
    return str(request.param)


def echo(text: str) -> dict[str, str]:
    return dict(line.partition(": ")[::2] for line in text.splitlines())


def client(engine: str, **options: object) -> aioduct.Client:
    if engine == "local":
        return aioduct.Client(engine="local", workers=1, **options)  # type: ignore[arg-type]
    return aioduct.Client(**options)  # type: ignore[arg-type]


async def test_get_and_decode(nginx: Nginx, engine: str) -> None:
    class Message(msgspec.Struct):
        message: str
        count: int

    async with client(engine) as c:
        assert c.engine == engine
        r = await c.get(nginx.http_url + "/small")
        assert (r.status, r.reason, r.http_version, r.content) == (
            200,
            "OK",
            "HTTP/1.1",
            b"Hello, World!",
        )
        assert r.headers["content-length"] == "13" and str(r.url) == nginx.http_url + "/small"
        assert r.timings.ttfb is not None and r.timings.total > 0
        assert (await c.get(nginx.http_url + "/latin1")).text == "café"
        assert (await c.get(nginx.http_url + "/json")).json(type=Message) == Message("hello", 42)


async def test_request_bodies(nginx: Nginx, engine: str) -> None:
    async with client(engine) as c:
        assert (await c.post(nginx.http_url + "/post", content=b"x" * 4096)).text == "POST 4096"
        assert (await c.put(nginx.http_url + "/post", content="é")).text == "PUT 2"

        async def chunks():
            for _ in range(4):
                yield b"y" * 1000

        seen = echo((await c.post(nginx.http_url + "/echo/headers", content=chunks())).text)
        # The send engine streams it chunked; the local engine sends the buffered bytes.
        assert seen["transfer-encoding"] == "chunked" or seen["content-length"] == "4000"
        seen = echo((await c.post(nginx.http_url + "/echo/headers", json={"a": [1, 2]})).text)
        assert seen["content-type"] == "application/json" and seen["content-length"] == "11"
        big = await c.post(nginx.http_url + "/post", content=bytes(3 * 1024 * 1024))
        assert big.text == f"POST {3 * 1024 * 1024}"


async def test_headers_params_base_url_and_auth(nginx: Nginx, engine: str) -> None:
    async with client(engine, headers={"X-Test": "client"}, base_url=nginx.http_url) as c:
        seen = echo((await c.get("/echo/headers?a=1", params={"b": "x y"})).text)
        assert seen["user-agent"] == f"aioduct/{aioduct.__version__}"
        assert seen["x-test"] == "client" and seen["uri"] == "/echo/headers?a=1&b=x%20y"
        assert seen["host"] == nginx.http_url.split("//")[1]
        seen = echo((await c.get("/echo/headers", headers={"x-test": "req"})).text)
        assert seen["x-test"] == "req"
        assert (await c.get("/auth/basic")).status == 401
        assert (await c.get("/auth/basic", auth=("user", "pass"))).status == 200
        assert (await c.get("/auth/bearer", auth=aioduct.BearerAuth("t0ken"))).status == 200


async def test_downloads_and_streaming(nginx: Nginx, engine: str) -> None:
    async with client(engine) as c:
        r = await c.get(nginx.http_url + "/bytes/1m")
        assert r.content == deterministic_bytes(1 << 20)
        async with c.stream("GET", nginx.http_url + "/bytes/64k") as s:
            parts = [chunk async for chunk in s.aiter_bytes(chunk_size=10000)]
        assert b"".join(parts) == deterministic_bytes(65536) and len(parts[0]) == 10000


async def test_redirects(nginx: Nginx, engine: str) -> None:
    async with client(engine) as c:
        r = await c.post(nginx.http_url + "/redirect/303/post", content=b"abc")
        assert r.text == "GET " and str(r.url) == nginx.http_url + "/post"
        r = await c.post(nginx.http_url + "/redirect/307/post", content=b"abc")
        assert r.text == "POST 3"
        assert (
            await c.get(nginx.http_url + "/redirect/302/small", follow_redirects=False)
        ).status == 302
        with pytest.raises(aioduct.TooManyRedirects):
            await c.get(nginx.http_url + "/loop")
        with pytest.raises(aioduct.RedirectError, match="ftp"):
            await c.get(nginx.http_url + "/redirect-scheme")


async def test_errors_keep_their_types(nginx: Nginx, engine: str) -> None:
    async with client(engine, timeout=0.3) as c:
        r = await c.get(nginx.http_url + "/status/503")
        with pytest.raises(aioduct.StatusError, match="server error"):
            r.raise_for_status()
        with pytest.raises(aioduct.ConnectError, match=r"cannot connect to 127\.0\.0\.1:1") as info:
            await c.get("http://127.0.0.1:1/")
        assert info.value.is_connect and info.value.url == "http://127.0.0.1:1/"
        with pytest.raises(aioduct.TotalTimeout) as timeout:
            await c.get(nginx.http_url + "/slow")
        assert timeout.value.is_timeout
        assert (await c.get(nginx.http_url + "/small", timeout=5)).status == 200
        with pytest.raises(aioduct.InvalidURL, match="missing scheme"):
            await c.get("example.com/x")
    async with client(engine, https_only=True) as strict:
        with pytest.raises(aioduct.InvalidURL, match="https_only"):
            await strict.get(nginx.http_url + "/small")


async def test_closed_client(nginx: Nginx, engine: str) -> None:
    c = client(engine)
    await c.get(nginx.http_url + "/small")
    await c.aclose()
    with pytest.raises(aioduct.ClientClosed):
        await c.get(nginx.http_url + "/small")


def test_blocking_client_on_the_local_engine(nginx: Nginx, engine: str) -> None:
    options = {"engine": "local", "workers": 1} if engine == "local" else {}
    with aioduct.BlockingClient(**options) as c:
        assert c.get(nginx.http_url + "/small").content == b"Hello, World!"


def test_code_cannot_travel_to_workers() -> None:
    with pytest.raises(TypeError, match="redirect_policy is a Python callable"):
        aioduct.Client(engine="local", redirect_policy=aioduct.same_origin_only)
    with pytest.raises(TypeError, match="workers= applies to engine='local'"):
        aioduct.Client(workers=2)
    with pytest.raises(ValueError, match="engine must be 'send', 'local' or 'auto'"):
        aioduct.Client(engine="turbo")
