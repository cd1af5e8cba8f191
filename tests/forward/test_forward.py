# ruff: noqa: SIM117  (nested blocks: each server and client has its own scope)
"""aioduct.forward.asgi_app under hypercorn, in front of nginx (and, to see exactly which
headers arrive upstream or come back, in front of the scripted server)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import pytest

import aioduct
from aioduct.forward import asgi_app, forwarded_element
from aioduct.testing.asgi import ASGIServer
from aioduct.testing.nginx import Nginx, deterministic_bytes
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

MB = 1024 * 1024


@pytest.fixture
def proxy(nginx: Nginx) -> Iterator[ASGIServer]:
    with ASGIServer(asgi_app(nginx.http_url)) as srv:
        yield srv


async def test_get_and_stream_through_the_proxy(proxy: ASGIServer) -> None:
    async with aioduct.Client() as c:
        r = await c.get(proxy.url + "/small")
        assert r.status == 200 and r.text == "Hello, World!"
        async with c.stream("GET", proxy.url + "/bytes/10m") as r:
            assert r.headers["content-length"] == str(10 * MB)
            got = bytearray()
            async for chunk in r.aiter_bytes():
                got += chunk
        assert bytes(got) == deterministic_bytes(10 * MB)
        r = await c.get(proxy.url + "/no/such/path?x=1")
        assert r.status == 404 and "no such location: /no/such/path" in r.text


async def test_request_bodies_stream_upstream(proxy: ASGIServer) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 65536

    async with aioduct.Client() as c:
        r = await c.post(proxy.url + "/post", content=b"y" * (3 * MB))
        assert r.text == f"POST {3 * MB}"
        r = await c.post(proxy.url + "/post", content=chunks())  # chunked, no length
        assert r.status == 200 and r.text.startswith("POST")


async def test_redirects_and_encodings_pass_through(nginx: Nginx) -> None:
    with ASGIServer(asgi_app(nginx.http_url)) as srv:
        async with aioduct.Client(follow_redirects=False) as c:
            r = await c.get(srv.url + "/loop")
            assert r.status == 302 and r.headers["location"].endswith("/loop")
        async with aioduct.Client() as c:
            r = await c.get(srv.url + "/gzip", headers={"Accept-Encoding": "gzip"})
            assert r.headers["content-encoding"] == "gzip"  # not decoded by the proxy
            assert r.text.startswith("line 0000")


async def test_h2c_upstream(nginx: Nginx) -> None:
    """nginx's h2c port speaks only HTTP/2 with prior knowledge: h2c=True reaches it."""
    with ASGIServer(asgi_app(nginx.h2c_url, h2c=True)) as srv:
        async with aioduct.Client() as c:
            r = await c.get(srv.url + "/bytes/1m")
            assert r.content == deterministic_bytes(MB)
            r = await c.post(srv.url + "/post", content=b"z" * 100_000)
            assert r.text == "POST 100000"


def _upstream_recorder(srv: ScriptServer, seen: list[ServerRequest]) -> None:
    @srv.route("/h")
    async def handler(conn: Conn, req: ServerRequest) -> None:
        seen.append(req)
        await conn.send(
            b"HTTP/1.1 200 OK\r\nConnection: X-Up-Hop, keep-alive\r\nX-Up-Hop: secret\r\n"
            b"Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nTrailer: X-T\r\n"
            b"X-Kept: yes\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )


async def test_hop_by_hop_headers_are_stripped_both_ways(script_server: ScriptServer) -> None:
    """Hop-by-hop smuggling: headers named in repeated and non-UTF-8 Connection fields,
    proxy credentials and TE never reach the upstream; the upstream's hop-by-hop
    headers never reach the client."""
    seen: list[ServerRequest] = []
    _upstream_recorder(script_server, seen)
    with ASGIServer(asgi_app(script_server.url)) as srv:
        async with aioduct.Client() as c:
            r = await c.get(
                srv.url + "/h",
                headers=[
                    ("Connection", "X-A"),
                    ("Connection", "x-b, X-\xe9"),
                    ("X-A", "1"),
                    ("X-B", "2"),
                    ("Proxy-Authorization", "Basic c2VjcmV0"),
                    ("TE", "trailers"),
                    ("Keep-Alive", "timeout=1"),
                    ("X-End-To-End", "kept"),
                ],
            )
    assert r.status == 200 and r.text == "hello"
    assert r.headers.get("x-kept") == "yes"
    for name in ("x-up-hop", "keep-alive", "proxy-authenticate", "trailer"):
        assert name not in r.headers, name
    req = seen[0]
    names = {k.decode("latin-1") for k, _ in req.headers}
    assert req.header("x-end-to-end") == "kept"
    for name in ("x-a", "x-b", "proxy-authorization", "te", "keep-alive", "connection"):
        assert name not in names, name
    assert req.header("host") == script_server.url.removeprefix("http://")


@pytest.mark.parametrize("trust", [False, True])
async def test_forwarded_headers_are_not_spoofable(
    script_server: ScriptServer, trust: bool
) -> None:
    """X-Forwarded-* and Forwarded describe what the proxy saw; client-sent values are
    dropped unless the proxy is told to trust the hop before it (then appended to)."""
    seen: list[ServerRequest] = []
    _upstream_recorder(script_server, seen)
    with ASGIServer(asgi_app(script_server.url, trust_forwarded=trust)) as srv:
        host = srv.url.removeprefix("http://")
        async with aioduct.Client() as c:
            await c.get(
                srv.url + "/h",
                headers={
                    "Forwarded": "for=1.2.3.4;proto=https",
                    "X-Forwarded-For": "1.2.3.4",
                    "X-Forwarded-Host": "evil.example",
                    "X-Forwarded-Proto": "https",
                },
            )
    req = seen[0]
    ours = f'for=127.0.0.1;proto=http;host="{host}"'
    if trust:
        assert req.header_list("forwarded") == [f"for=1.2.3.4;proto=https, {ours}"]
        assert req.header_list("x-forwarded-for") == ["1.2.3.4, 127.0.0.1"]
    else:
        assert req.header_list("forwarded") == [ours]
        assert req.header_list("x-forwarded-for") == ["127.0.0.1"]
    assert req.header_list("x-forwarded-host") == [host]  # never the client's claim
    assert req.header_list("x-forwarded-proto") == ["http"]


def test_forwarded_element_quoting() -> None:
    assert forwarded_element("192.0.2.1", "http", "a.example") == (
        "for=192.0.2.1;proto=http;host=a.example"
    )
    assert forwarded_element("2001:db8::1", "https", "h:8443") == (
        'for="[2001:db8::1]";proto=https;host="h:8443"'
    )
    assert forwarded_element(None, "http", None) == "for=unknown;proto=http"
    assert forwarded_element("_hidden", "http", 'a"b') == 'for=_hidden;proto=http;host="a\\"b"'


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_upstream_is_a_502_problem() -> None:
    with ASGIServer(asgi_app(f"http://127.0.0.1:{_closed_port()}")) as srv:
        async with aioduct.Client() as c:
            r = await c.get(srv.url + "/anything")
    assert r.status == 502
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 502 and problem["title"] == "Bad Gateway"
    assert problem["type"] == "about:blank" and "ConnectError" in problem["detail"]
    assert "127.0.0.1" not in problem["detail"]  # the upstream's address stays private


async def test_slow_upstream_is_a_504_problem(script_server: ScriptServer) -> None:
    @script_server.route("/slow")
    async def slow(conn: Conn, req: ServerRequest) -> None:
        await conn.sleep(2)

    with ASGIServer(asgi_app(script_server.url, read_timeout=0.2)) as srv:
        async with aioduct.Client() as c:
            r = await c.get(srv.url + "/slow")
    assert r.status == 504 and r.json()["title"] == "Gateway Timeout"


async def test_upstream_failing_mid_body_breaks_the_downstream_response(
    script_server: ScriptServer,
) -> None:
    @script_server.route("/cut")
    async def cut(conn: Conn, req: ServerRequest) -> None:
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"a" * 1000)
        conn.close()

    with ASGIServer(asgi_app(script_server.url)) as srv:
        async with aioduct.Client() as c:
            with pytest.raises(aioduct.TransportError):
                await c.get(srv.url + "/cut")


def test_invalid_configuration() -> None:
    with pytest.raises(aioduct.InvalidURL):
        asgi_app("ftp://x/")
    with pytest.raises(ValueError, match="h2c"):
        asgi_app("https://x/", h2c=True)
    with pytest.raises(TypeError):
        asgi_app("http://x/", client=aioduct.Client(), read_timeout=1)


@pytest.mark.parametrize("h2c", [False, True])
async def test_websockets_are_relayed(h2c: bool) -> None:
    """A WebSocket through the proxy: opened upstream (Upgrade, or extended CONNECT over
    h2c), the subprotocol and the close code passed on both ways."""
    from aioduct.testing.asgi import echo_websocket_app

    # A proxy per WebSocket: over h2c its upstream connection is shared, and hypercorn
    # 0.18 drops that connection when the answer to its close frame reaches a stream it
    # has already forgotten (a KeyError on its side) -- a later CONNECT on it would fail.
    with ASGIServer(echo_websocket_app) as upstream:
        with ASGIServer(asgi_app(upstream.url, h2c=h2c)) as srv:
            async with aioduct.Client() as c:
                async with c.websocket(srv.ws_url + "/chat", subprotocols=["echo.x"]) as ws:
                    assert ws.subprotocol == "echo.x"
                    await ws.send_text("through")
                    assert await ws.receive() == "through"
                    await ws.send_bytes(b"\x00bin")
                    assert await ws.receive() == b"\x00bin"
                async with c.websocket(srv.ws_url) as ws:  # we close: relayed upstream
                    await ws.send_text("x")
                    assert await ws.receive() == "x"
                assert ws.close_code == 1000
                async with c.websocket(srv.ws_url + "/chat") as ws:
                    await ws.send_text("close-me")  # the upstream closes: 1000 "asked to"
                    assert [m async for m in ws] == []
                    assert (ws.close_code, ws.close_reason) == (1000, "asked to")
        with ASGIServer(asgi_app(upstream.url, h2c=h2c)) as srv:
            async with aioduct.Client() as c:
                async with c.websocket(srv.ws_url + "/close/4003") as ws:
                    with pytest.raises(aioduct.WebSocketClosed) as info:
                        await ws.receive()
                    assert info.value.code == 4003


async def test_websocket_to_an_unreachable_upstream_is_refused() -> None:
    with ASGIServer(asgi_app(f"http://127.0.0.1:{_closed_port()}")) as srv:
        async with aioduct.Client() as c:
            with pytest.raises(aioduct.WebSocketHandshakeError, match="403"):
                async with c.websocket(srv.ws_url + "/x"):
                    pass


async def test_cookies_pass_through_and_are_never_shared(script_server: ScriptServer) -> None:
    """One proxy, two users: the upstream's Set-Cookie reaches the first user, and the
    second user's request carries no cookie of the first (the proxy keeps no jar)."""
    seen: list[ServerRequest] = []

    @script_server.route("/login")
    async def login(conn: Conn, req: ServerRequest) -> None:
        seen.append(req)
        await conn.send_response(200, [("Set-Cookie", "session=alice; Path=/")], b"in")

    with ASGIServer(asgi_app(script_server.url)) as srv:
        async with aioduct.Client() as alice:
            r = await alice.get(srv.url + "/login")
            assert r.headers.get("set-cookie") == "session=alice; Path=/"
            await alice.get(srv.url + "/login")  # alice's own jar sends it back
        async with aioduct.Client() as bob:
            await bob.get(srv.url + "/login")
    assert [req.header("cookie") for req in seen] == [None, "session=alice", None]
