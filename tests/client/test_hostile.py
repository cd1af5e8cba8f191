"""Malformed, truncated, slow and hostile servers: a clear exception, no hang, clean pool.

Every case ends by checking that the client still works against a well-behaved route of
the same server and that no connection leaked (the pool's open count).
"""

from __future__ import annotations

import asyncio

import pytest

import aioduct
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def assert_recovers(client: aioduct.Client, srv: ScriptServer) -> None:
    pool = client._engine.pool
    assert pool is not None
    assert pool.open_connections == 0, "a broken connection was kept"
    r = await client.get(srv.url + "/good")
    assert r.content == b"ok"


@pytest.fixture
def srv(script_server: ScriptServer) -> ScriptServer:
    script_server.route_raw("/good", OK)
    return script_server


@pytest.mark.parametrize(
    ("raw", "error", "message"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            aioduct.RemoteProtocolError,
            "Transfer-Encoding",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            aioduct.RemoteProtocolError,
            "Content-Length",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", aioduct.RemoteProtocolError, None),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            aioduct.RemoteProtocolError,
            None,
        ),
        (
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n",
            aioduct.RemoteProtocolError,
            None,
        ),
        (
            b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
            aioduct.RemoteProtocolError,
            None,
        ),
        (
            b"HTTP/1.1 200 OK\r\nNoColonHere\r\nContent-Length: 0\r\n\r\n",
            aioduct.RemoteProtocolError,
            None,
        ),
        (b"HTTX/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", aioduct.RemoteProtocolError, None),
        (b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", aioduct.RemoteProtocolError, None),
        (b"garbage\r\n\r\n", aioduct.RemoteProtocolError, None),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-twelve!",
            aioduct.RemoteProtocolError,
            "100",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            aioduct.RemoteProtocolError,
            None,
        ),
        (b"", aioduct.RemoteProtocolError, "without sending a response"),
        (b"HTTP/1.1 200 OK\r\nContent-", aioduct.RemoteProtocolError, None),
    ],
)
async def test_malformed_responses(
    srv: ScriptServer, raw: bytes, error: type, message: str | None
) -> None:
    srv.route_raw("/bad", raw, close=True)
    async with aioduct.Client() as client:
        with pytest.raises(error, match=message) as info:
            await client.get(srv.url + "/bad")
        assert info.value.url == srv.url + "/bad"
        await assert_recovers(client, srv)


async def test_oversized_and_too_many_headers(srv: ScriptServer) -> None:
    srv.route_raw(
        "/big-head", b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 5000 + b"\r\nContent-Length: 0\r\n\r\n"
    )
    many = b"".join(b"X-%d: v\r\n" % i for i in range(30))
    srv.route_raw("/many", b"HTTP/1.1 200 OK\r\n" + many + b"Content-Length: 0\r\n\r\n")
    async with aioduct.Client(max_response_head_bytes=4096, max_response_headers=20) as client:
        with pytest.raises(aioduct.RemoteProtocolError, match="4096"):
            await client.get(srv.url + "/big-head")
        await assert_recovers(client, srv)
        await client.aclose()
    async with aioduct.Client(max_response_headers=20) as client:
        with pytest.raises(aioduct.RemoteProtocolError, match="20"):
            await client.get(srv.url + "/many")
        await assert_recovers(client, srv)


async def test_reset_mid_body(srv: ScriptServer) -> None:
    @srv.route("/reset")
    async def reset(conn: Conn, req: ServerRequest) -> None:
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        await conn.sleep(0.05)
        conn.reset()

    async with aioduct.Client() as client:
        with pytest.raises((aioduct.ReadError, aioduct.RemoteProtocolError)):
            await client.get(srv.url + "/reset")
        await assert_recovers(client, srv)


async def test_read_timeout_on_a_silent_server(srv: ScriptServer) -> None:
    @srv.route("/silent")
    async def silent(conn: Conn, req: ServerRequest) -> None:
        await conn.sleep(30)

    @srv.route("/stall-body")
    async def stall(conn: Conn, req: ServerRequest) -> None:
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await conn.sleep(30)

    async with aioduct.Client(read_timeout=0.2) as client:
        with pytest.raises(aioduct.ReadTimeout, match=r"read_timeout=0\.2s") as info:
            await client.get(srv.url + "/silent")
        assert info.value.is_timeout
        with pytest.raises(aioduct.ReadTimeout):
            await client.get(srv.url + "/stall-body")
        await assert_recovers(client, srv)
        async with client.stream("GET", srv.url + "/stall-body") as r:
            with pytest.raises(aioduct.ReadTimeout):
                await r.aread()


async def test_slow_drip_within_deadlines_is_fine(srv: ScriptServer) -> None:
    @srv.route("/drip")
    async def drip(conn: Conn, req: ServerRequest) -> None:
        await conn.drip(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", chunk_size=3, delay=0.002
        )

    async with aioduct.Client(read_timeout=2) as client:
        r = await client.get(srv.url + "/drip")
        assert r.content == b"hello"
        assert (await client.get(srv.url + "/drip")).content == b"hello"


async def test_endless_drip_hits_the_total_timeout(srv: ScriptServer) -> None:
    @srv.route("/slowloris")
    async def slowloris(conn: Conn, req: ServerRequest) -> None:
        await conn.send(b"HTTP/1.1 200 OK\r\n")
        for i in range(10_000):
            await conn.send(b"X-%d: y\r\n" % i)
            await conn.sleep(0.01)

    async with aioduct.Client(timeout=0.4, read_timeout=5) as client:
        with pytest.raises(aioduct.TotalTimeout):
            await client.get(srv.url + "/slowloris")
        await assert_recovers(client, srv)


async def test_stale_pooled_connection_is_retried_once_for_idempotent_requests(
    srv: ScriptServer,
) -> None:
    @srv.route("/once")
    async def once(conn: Conn, req: ServerRequest) -> None:
        await conn.send(OK)
        await conn.sleep(0.05)
        conn.close()  # keep-alive promised, then closed while idle

    async with aioduct.Client() as client:
        assert (await client.get(srv.url + "/once")).content == b"ok"
        await asyncio.sleep(0.2)
        r = await client.get(srv.url + "/once")
        assert r.content == b"ok" and r.timings.connect is not None
        assert srv.connections_accepted == 2


async def test_stale_connection_detected_at_checkout(srv: ScriptServer) -> None:
    srv.route_raw("/then-close", OK, close=True)
    async with aioduct.Client() as client:
        # The server closes right after responding but did not say Connection: close.
        await client.get(srv.url + "/then-close")
        await asyncio.sleep(0.1)
        assert (await client.get(srv.url + "/good")).content == b"ok"


async def test_post_on_a_stale_connection_is_not_replayed(srv: ScriptServer) -> None:
    closed = asyncio.Event()

    @srv.route("/post-once")
    async def post_once(conn: Conn, req: ServerRequest) -> None:
        await conn.send(OK)

    async with aioduct.Client(pool_idle_timeout=None) as client:
        await client.post(srv.url + "/post-once", content=b"1")
        pool = client._engine.pool
        assert pool is not None
        conn = pool._idle[next(iter(pool._idle))][0]
        # Make the idle connection look alive but let the server kill it mid-request.
        srv.requests.clear()
        closed.set()
        conn.stream.is_reusable = lambda: True  # type: ignore[method-assign]
        srv.route_raw("/post-once", b"", close=True)
        with pytest.raises(aioduct.ReadError):
            await client.post(srv.url + "/post-once", content=b"2")


async def test_interim_and_trailers_and_http10(srv: ScriptServer) -> None:
    srv.route_raw(
        "/continue",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + OK,
    )
    srv.route_raw(
        "/chunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n",
    )
    srv.route_raw(
        "/eof", b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", close=True
    )
    srv.route_raw("/http10", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", close=True)
    async with aioduct.Client() as client:
        assert (await client.get(srv.url + "/continue")).content == b"ok"
        assert (await client.get(srv.url + "/chunked")).content == b"hello world"
        r = await client.get(srv.url + "/eof")
        assert r.content == b"until the end"
        r = await client.get(srv.url + "/http10")
        assert r.http_version == "HTTP/1.0" and r.content == b"ok"
        await client.get(srv.url + "/good")


async def test_body_size_limit(srv: ScriptServer) -> None:
    srv.route_raw("/huge", b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000)
    async with aioduct.Client(max_body_size=50000) as client:
        with pytest.raises(aioduct.BodyTooLarge, match="max_body_size=50000"):
            await client.get(srv.url + "/huge")
        await assert_recovers(client, srv)


async def test_request_header_injection_is_refused(srv: ScriptServer) -> None:
    async with aioduct.Client() as client:
        with pytest.raises(aioduct.LocalProtocolError):
            await client.get(srv.url + "/good", headers={"X-Evil": "a\r\nInjected: 1"})
        assert srv.connections_accepted == 0  # refused as it was built
        assert (await client.get(srv.url + "/good")).content == b"ok"
    assert all(r.header("injected") is None for r in srv.requests)
