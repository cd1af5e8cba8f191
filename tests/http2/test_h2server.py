"""HTTP/2 failure handling and limits against the scriptable h2 server."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator

import h2.errors
import pytest

import aioduct
from aioduct.testing.h2server import H2Request, H2Server
from aioduct.testing.nginx import TLSMaterial, deterministic_bytes
from aioduct.testing.server import Conn, ScriptServer, ServerRequest


@pytest.fixture
def srv() -> Iterator[H2Server]:
    with H2Server() as server:
        yield server


def client(**options: object) -> aioduct.Client:
    return aioduct.Client(http2_prior_knowledge=True, **options)  # type: ignore[arg-type]


def open_connections(c: aioduct.Client) -> int:
    assert c._engine.pool is not None
    return c._engine.pool.open_connections


async def test_concurrent_first_requests_share_the_connection_being_opened(
    srv: H2Server,
) -> None:
    async with client() as c:
        rs = await asyncio.gather(*(c.get(srv.url + "/slow/50") for _ in range(20)))
        assert all(r.content == b"slow" for r in rs)
    assert srv.connections_accepted == 1
    assert srv.max_open_streams_seen == 20


async def test_max_concurrent_streams_is_honoured_and_another_connection_opened() -> None:
    with H2Server(max_concurrent_streams=3) as srv:
        async with client() as c:
            rs = await asyncio.gather(*(c.get(srv.url + "/slow/100") for _ in range(7)))
            assert all(r.status == 200 for r in rs)
        assert srv.max_open_streams_seen <= 3
        assert srv.connections_accepted == 3  # 3 + 3 + 1


async def test_stream_limit_with_a_connection_cap_waits_for_slots() -> None:
    with H2Server(max_concurrent_streams=2) as srv:
        async with client(max_connections_per_host=1) as c:
            rs = await asyncio.gather(*(c.get(srv.url + "/slow/30") for _ in range(6)))
            assert all(r.status == 200 for r in rs)
        assert srv.connections_accepted == 1
        assert srv.max_open_streams_seen <= 2


async def test_rst_stream_fails_one_request_and_spares_its_siblings(srv: H2Server) -> None:
    @srv.route("/reset")
    async def reset(req: H2Request) -> None:
        await asyncio.sleep(0.05)
        req.reset(h2.errors.ErrorCodes.INTERNAL_ERROR)

    async with client() as c:
        results = await asyncio.gather(
            c.get(srv.url + "/slow/100"),
            c.get(srv.url + "/reset"),
            c.get(srv.url + "/bytes/100000"),
            return_exceptions=True,
        )
        assert isinstance(results[1], aioduct.RemoteProtocolError)
        assert "INTERNAL_ERROR" in str(results[1]) and "reset the HTTP/2 stream" in str(results[1])
        assert results[0].content == b"slow"  # type: ignore[union-attr]
        assert results[2].content == deterministic_bytes(100000)  # type: ignore[union-attr]
        assert (await c.get(srv.url + "/small")).status == 200
    assert srv.connections_accepted == 1


async def test_goaway_mid_flight_retries_unprocessed_streams(srv: H2Server) -> None:
    """Streams above last-stream-id go to a new connection; the processed ones finish."""
    started = asyncio.Event()
    first: list[int] = []

    @srv.route("/first")
    async def first_handler(req: H2Request) -> None:
        first.append(req.stream_id)
        await asyncio.sleep(0.1)
        # Declare everything after this stream unprocessed; then finish this one.
        req.conn.goaway(last_stream_id=req.stream_id)
        await req.respond(200, b"first")

    @srv.route("/later")
    async def later(req: H2Request) -> None:
        if req.conn.id == 1:
            return  # never answered on the first connection: it was "not processed"
        await req.respond(200, b"later")

    async with client() as c:
        one = asyncio.ensure_future(c.get(srv.url + "/first"))
        await asyncio.sleep(0.02)
        rest = [asyncio.ensure_future(c.post(srv.url + "/later", content=b"x")) for _ in range(4)]
        results = await asyncio.gather(one, *rest)
        started.set()
        assert [r.content for r in results] == [b"first"] + [b"later"] * 4
        assert (await c.get(srv.url + "/small")).status == 200
    assert srv.connections_accepted == 2


async def test_goaway_with_an_error_fails_processed_streams_clearly(srv: H2Server) -> None:
    @srv.route("/doomed")
    async def doomed(req: H2Request) -> None:
        req.conn.goaway(
            last_stream_id=req.stream_id, error_code=h2.errors.ErrorCodes.INTERNAL_ERROR
        )
        await asyncio.sleep(0.05)
        req.conn.close()

    async with client() as c:
        with pytest.raises(aioduct.ReadError, match=r"GOAWAY .*INTERNAL_ERROR"):
            await c.get(srv.url + "/doomed")
        assert open_connections(c) == 0
        assert (await c.get(srv.url + "/small")).status == 200


async def test_streaming_request_body_is_not_replayed_after_goaway(srv: H2Server) -> None:
    @srv.route("/never")
    async def never(req: H2Request) -> None:
        req.conn.goaway(last_stream_id=0)

    async def body():  # type: ignore[no-untyped-def]
        yield b"once"

    async with client() as c:
        with pytest.raises(aioduct.ReadError, match="before processing this request"):
            await c.post(srv.url + "/never", content=body())


async def test_upload_waits_for_the_servers_small_window() -> None:
    with H2Server(initial_window_size=4096) as srv:
        body = deterministic_bytes(1_000_000)
        async with client() as c:
            r = await c.post(srv.url + "/echo", content=body)
            assert r.content == body


async def test_server_settings_max_frame_size_and_window_are_honoured() -> None:
    with H2Server(initial_window_size=1000, max_frame_size=16384) as srv:
        async with client() as c:
            rs = await asyncio.gather(
                *(c.post(srv.url + "/echo", content=b"%d" % i * 5000) for i in range(5))
            )
            assert [r.content for r in rs] == [b"%d" % i * 5000 for i in range(5)]


async def test_ping_timeout_closes_the_connection_and_fails_its_streams() -> None:
    with H2Server(answer_pings=False) as srv:
        cfg = aioduct.Http2Config(keep_alive_interval=0.05, keep_alive_timeout=0.1)
        async with client(http2_config=cfg) as c:
            with pytest.raises(aioduct.ReadError, match="keep-alive PING"):
                await c.get(srv.url + "/slow/2000")
            assert open_connections(c) == 0


async def test_keep_alive_pings_are_answered(srv: H2Server) -> None:
    cfg = aioduct.Http2Config(keep_alive_interval=0.03, keep_alive_timeout=1.0)
    async with client(http2_config=cfg) as c:
        assert (await c.get(srv.url + "/slow/200")).content == b"slow"


async def test_protocol_violation_fails_the_connection_not_the_pool(srv: H2Server) -> None:
    @srv.route("/garbage")
    async def garbage(req: H2Request) -> None:
        req.conn.writer.write(b"\x00\x00\x01\x07\x00\x00\x00\x00\x01x")  # 1-byte GOAWAY
        await asyncio.sleep(1)

    async with client() as c:
        with pytest.raises(aioduct.RemoteProtocolError, match="broke the HTTP/2 protocol"):
            await c.get(srv.url + "/garbage")
        assert open_connections(c) == 0
        assert (await c.get(srv.url + "/small")).status == 200


async def test_read_timeout_resets_only_that_stream(srv: H2Server) -> None:
    async with client(read_timeout=0.1) as c:
        slow = c.get(srv.url + "/slow/2000")
        fast = c.get(srv.url + "/bytes/1000")
        results = await asyncio.gather(slow, fast, return_exceptions=True)
        assert isinstance(results[0], aioduct.ReadTimeout)
        assert len(results[1].content) == 1000  # type: ignore[union-attr]
        assert open_connections(c) == 1
    assert srv.connections_accepted == 1


async def test_idle_connection_is_closed_after_the_idle_timeout(srv: H2Server) -> None:
    async with client(pool_idle_timeout=0.1) as c:
        await c.get(srv.url + "/small")
        assert open_connections(c) == 1
        for _ in range(100):
            await asyncio.sleep(0.02)
            if open_connections(c) == 0:
                break
        assert open_connections(c) == 0
        assert (await c.get(srv.url + "/small")).status == 200
    assert srv.connections_accepted == 2


async def test_extended_connect_tunnel() -> None:
    with H2Server(enable_connect_protocol=True) as srv:

        @srv.route("/chat")
        async def chat(req: H2Request) -> None:
            assert req.method == "CONNECT" and req.protocol == "websocket"
            req.send_headers(200)
            while (chunk := await req.receive()) is not None:
                await req.send_data(chunk.upper())
            await req.send_data(b"", end_stream=True)

        async with client() as c:
            r = await c.request("CONNECT", srv.url + "/chat", protocol="websocket")
            assert r.status == 200 and r.http_version == "HTTP/2"
            tunnel = await r.upgrade()
            await tunnel.send(b"hello")
            assert await tunnel.receive() == b"HELLO"
            big = deterministic_bytes(300_000)
            await tunnel.send(big)
            got = b""
            while len(got) < len(big):
                got += await tunnel.receive()
            assert got == big.upper()
            # the connection serves other requests meanwhile
            assert (await c.get(srv.url + "/small")).status == 200
            await tunnel.send_eof()
            assert await tunnel.receive() == b""
            await tunnel.aclose()
            with pytest.raises(RuntimeError, match="not an upgrade"):
                await r.upgrade()
        assert srv.connections_accepted == 1


async def test_extended_connect_without_server_support_is_refused(srv: H2Server) -> None:
    async with client() as c:
        with pytest.raises(aioduct.RemoteProtocolError, match="extended CONNECT"):
            await c.request("CONNECT", srv.url + "/chat", protocol="websocket")
        assert (await c.get(srv.url + "/small")).status == 200
    with pytest.raises(ValueError, match="CONNECT"):
        aioduct.Request("GET", srv.url, protocol="websocket")


async def test_h2_over_tls_and_coalescing_needs_matching_address(tls_ca: TLSMaterial) -> None:
    with H2Server(tls=tls_ca.server_ssl_context()) as srv:
        async with aioduct.Client(verify=tls_ca.ca_pem_path) as c:
            r = await c.get(srv.url + "/small")
            assert r.http_version == "HTTP/2"
            # 127.0.0.1 is in the certificate and is the connection's address: coalesced.
            r = await c.get(f"https://127.0.0.1:{srv.port}/small")
            assert r.status == 200
            assert open_connections(c) == 1
        assert srv.connections_accepted == 1


async def test_our_max_frame_size_is_advertised_and_accepted(srv: H2Server) -> None:
    cfg = aioduct.Http2Config(max_frame_size=1 << 20)
    async with client(http2_config=cfg) as c:
        r = await c.get(srv.url + "/bytes/3000000")  # sent in frames of up to 1 MiB
        assert r.content == deterministic_bytes(3_000_000)


async def test_no_coalescing_when_the_address_differs(tls_ca: TLSMaterial) -> None:
    """The certificate covers both names, the port is the same, the addresses are not."""
    leaf = tls_ca.ca.issue_cert("127.0.0.1", "127.0.0.2")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(ctx)
    other = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(other)
    with H2Server(tls=ctx) as one:
        try:
            two = H2Server(tls=other, host="127.0.0.2", port=one.port).start()
        except (OSError, RuntimeError):
            pytest.skip("cannot bind 127.0.0.2 here")
        try:
            async with aioduct.Client(verify=tls_ca.ca_pem_path) as c:
                await c.get(f"https://127.0.0.1:{one.port}/small")
                await c.get(f"https://127.0.0.2:{one.port}/small")
                assert open_connections(c) == 2
            assert one.connections_accepted == 1 and two.connections_accepted == 1
        finally:
            two.close()


async def test_oversized_and_too_many_headers_are_refused_clearly(srv: H2Server) -> None:
    @srv.route("/huge")
    async def huge(req: H2Request) -> None:
        req.send_headers(200, [("x-big", "a" * 5000)], end_stream=True)

    @srv.route("/many")
    async def many(req: H2Request) -> None:
        req.send_headers(200, [(f"x-{i}", "1") for i in range(150)], end_stream=True)

    async with client(http2_config=aioduct.Http2Config(max_header_list_size=4096)) as c:
        with pytest.raises(aioduct.RemoteProtocolError, match="header list larger than 4096"):
            await c.get(srv.url + "/huge")
        assert (await c.get(srv.url + "/small")).status == 200
    async with client() as c:
        with pytest.raises(aioduct.RemoteProtocolError, match="max_response_headers=100"):
            await c.get(srv.url + "/many")
        assert (await c.get(srv.url + "/small")).status == 200


async def test_server_dropping_the_connection_fails_its_streams_clearly(srv: H2Server) -> None:
    @srv.route("/drop")
    async def drop(req: H2Request) -> None:
        req.send_headers(200, [("content-length", "100000")])
        await req.send_data(b"x" * 1000)
        await asyncio.sleep(0.05)
        req.conn.close()

    async with client() as c:
        results = await asyncio.gather(
            c.get(srv.url + "/drop"), c.get(srv.url + "/slow/500"), return_exceptions=True
        )
        assert all(isinstance(r, aioduct.ReadError) for r in results), results
        assert "closed the HTTP/2 connection" in str(results[0])
        assert open_connections(c) == 0
        assert (await c.get(srv.url + "/small")).status == 200


async def test_silent_server_hits_the_connect_timeout(script_server: ScriptServer) -> None:
    @script_server.on_connect
    async def silent(conn: Conn) -> None:
        await conn.sleep(5)

    async with client(connect_timeout=0.2) as c:
        with pytest.raises(aioduct.ConnectTimeout):
            await c.get(script_server.url + "/")
        assert open_connections(c) == 0


async def test_http1_only_tls_server_with_h2_offered(
    tls_script_server: ScriptServer, tls_ca: TLSMaterial
) -> None:
    """The server ignores ALPN: HTTP/1.1, and the origin is remembered as such."""
    tls_script_server.route_respond("/x", body=b"one-one")
    async with aioduct.Client(verify=tls_ca.ca_pem_path) as c:
        rs = await asyncio.gather(*(c.get(tls_script_server.url + "/x") for _ in range(4)))
        assert {(r.http_version, r.content) for r in rs} == {("HTTP/1.1", b"one-one")}
        pool = c._engine.pool
        assert pool is not None and pool._h1_only
        rs = await asyncio.gather(*(c.get(tls_script_server.url + "/x") for _ in range(4)))
        assert all(r.status == 200 for r in rs)


async def test_http1_upgrade_hands_over_the_connection(script_server: ScriptServer) -> None:
    @script_server.route("/ws")
    async def ws(conn: Conn, req: ServerRequest) -> None:
        assert req.header("upgrade") == "echo"
        await conn.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n\r\nhi")
        while data := await conn.recv():
            await conn.send(data[::-1])

    async with aioduct.Client() as c:
        r = await c.get(
            script_server.url + "/ws", headers={"Connection": "Upgrade", "Upgrade": "echo"}
        )
        assert r.status == 101 and r.http_version == "HTTP/1.1"
        up = await r.upgrade()
        assert await up.receive() == b"hi"  # bytes that came with the 101
        await up.send(b"abc")
        assert await up.receive() == b"cba"
        await up.aclose()
        assert open_connections(c) == 0  # handed over, not pooled
        assert (await c.get(script_server.url + "/ws2")).status == 404


async def test_unfinished_bodies_are_acknowledged_at_once(
    srv: H2Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TCP_QUICKACK while a body is still coming (h2c_1m: nginx's Nagle-held tail)."""
    from aioduct.runtimes.asyncio import AsyncioStream

    calls: list[bool] = []
    original = AsyncioStream.quick_ack

    def counting(self: AsyncioStream) -> None:
        original(self)
        calls.append(bool(self._sock))

    monkeypatch.setattr(AsyncioStream, "quick_ack", counting)
    async with client() as c:
        small = await c.get(srv.url + "/small")
        assert small.status == 200 and not calls  # complete in one read: no syscall
        r = await c.get(srv.url + "/bytes/1000000")
    assert len(r.content) == 1000000
    assert calls and all(calls)  # a real TCP socket took the option
