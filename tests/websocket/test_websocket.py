# ruff: noqa: SIM117  (nested blocks keep the client and the WebSocket apart on purpose)
"""client.websocket(): against hypercorn (HTTP/1.1 Upgrade, h2c and TLS extended CONNECT)
and, for what a correct server never does, against the scripted server."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Pong, TextMessage

import aioduct
from aioduct.testing.asgi import ASGIServer, echo_websocket_app
from aioduct.testing.nginx import TLSMaterial
from aioduct.testing.server import Conn, ScriptServer, ServerRequest
from aioduct.websocket import accept_value, connect


@pytest.fixture(scope="module")
def echo() -> Iterator[ASGIServer]:
    with ASGIServer(echo_websocket_app) as srv:
        yield srv


@pytest.fixture(scope="module")
def tls_echo(tls_ca: TLSMaterial) -> Iterator[ASGIServer]:
    with ASGIServer(echo_websocket_app, tls=tls_ca) as srv:
        yield srv


def open_connections(c: aioduct.Client) -> int:
    pool = c._engine.pool  # type: ignore[attr-defined]
    return 0 if pool is None else int(pool.open_connections)


async def _echo_round(ws: aioduct.websocket.WebSocket) -> None:
    await ws.send_text("héllo")
    assert await ws.receive() == "héllo"
    await ws.send_bytes(b"\x00\xffbin")
    assert await ws.receive_bytes() == b"\x00\xffbin"
    await ws.ping(b"are you there")
    big = "x" * 300_000  # many frames of the server, several TCP reads
    await ws.send(big)
    assert await ws.receive_text() == big


# -- against hypercorn -----------------------------------------------------------------------


async def test_http11_upgrade_echo(echo: ASGIServer) -> None:
    async with aioduct.Client() as c:
        async with c.websocket(echo.ws_url + "/chat", subprotocols=["x", "echo.v1"]) as ws:
            assert ws.http_version == "HTTP/1.1" and ws.subprotocol == "echo.v1"
            assert ws.response.status == 101
            await _echo_round(ws)
        assert ws.closed and ws.close_code == 1000
        assert open_connections(c) == 0  # handed over, never pooled
        assert (await c.get(echo.url + "/")).text == "ok"


async def test_h2c_extended_connect_echo(echo: ASGIServer) -> None:
    async with aioduct.Client(http2_prior_knowledge=True) as c:
        async with c.websocket(echo.ws_url + "/chat") as ws:
            assert ws.http_version == "HTTP/2" and ws.subprotocol is None
            await _echo_round(ws)
            # the connection keeps serving other streams meanwhile
            r = await c.get(echo.url + "/")
            assert r.http_version == "HTTP/2" and r.text == "ok"
        assert ws.close_code == 1000


async def test_tls_alpn_h2_extended_connect(tls_echo: ASGIServer, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(verify=tls_ca.ca_pem_path) as c:
        async with c.websocket(tls_echo.ws_url + "/chat") as ws:
            assert ws.http_version == "HTTP/2"
            await _echo_round(ws)
    async with aioduct.Client(verify=tls_ca.ca_pem_path, http2=False) as c:
        async with c.websocket(tls_echo.url + "/chat") as ws:  # https:// works too
            assert ws.http_version == "HTTP/1.1"
            await _echo_round(ws)


@pytest.mark.parametrize("h2", [False, True])
async def test_iteration_ends_on_a_normal_close_and_raises_on_others(
    echo: ASGIServer, h2: bool
) -> None:
    async with aioduct.Client(http2_prior_knowledge=h2) as c:
        async with c.websocket(echo.ws_url) as ws:
            await ws.send_text("one")
            await ws.send_text("close-me")
            assert [m async for m in ws] == ["one"]
            assert (ws.close_code, ws.close_reason) == (1000, "asked to")
            with pytest.raises(
                aioduct.WebSocketClosed, match="closed the WebSocket with code 1000"
            ):
                await ws.receive()
            with pytest.raises(aioduct.WebSocketClosed):
                await ws.send_text("too late")
    # A new client: over h2, hypercorn 0.18 may drop the connection when our answer to
    # its close frame reaches a stream it has already forgotten (a KeyError on its side).
    async with aioduct.Client(http2_prior_knowledge=h2) as c:
        async with c.websocket(echo.ws_url + "/close/4001") as ws:
            with pytest.raises(aioduct.WebSocketClosed) as info:
                async for _ in ws:
                    pass
            assert (info.value.code, info.value.reason) == (4001, "bye")


@pytest.mark.parametrize("h2", [False, True])
def test_blocking_client(echo: ASGIServer, h2: bool) -> None:
    with aioduct.BlockingClient(http2_prior_knowledge=h2) as c:
        with c.websocket(echo.ws_url, subprotocols=["echo"]) as ws:
            assert ws.http_version == ("HTTP/2" if h2 else "HTTP/1.1") and ws.subprotocol == "echo"
            ws.send_text("sync")
            assert ws.receive_text() == "sync"
            ws.send_bytes(b"raw")
            assert ws.receive() == b"raw"
            ws.ping()
            ws.send_text("close-me")
            assert list(ws) == []
            assert ws.close_code == 1000


def test_blocking_close_by_us(echo: ASGIServer) -> None:
    with aioduct.BlockingClient() as c, c.websocket(echo.ws_url) as ws:
        ws.send_text("a")
        assert ws.receive() == "a"
        ws.close(1000, "done")
        assert ws.closed and ws.close_code == 1000
        ws.close()  # closing twice does nothing


async def test_refused_upgrade_is_a_handshake_error(script_server: ScriptServer) -> None:
    script_server.route_respond("/plain", body=b"not a websocket")
    async with aioduct.Client() as c:
        with pytest.raises(aioduct.WebSocketHandshakeError, match="200 OK instead of 101") as info:
            async with c.websocket(script_server.url + "/plain"):
                pass
        assert info.value.response is not None
        assert info.value.response.content == b"not a websocket"
        assert open_connections(c) == 1  # an ordinary response: the connection is reusable


async def test_websocket_needs_the_send_engine(echo: ASGIServer) -> None:
    async with aioduct.Client() as c:
        with pytest.raises(aioduct.EngineUnavailable, match="send engine"):
            await connect(c, object(), echo.ws_url)  # type: ignore[arg-type]


async def test_invalid_arguments(echo: ASGIServer) -> None:
    async with aioduct.Client() as c:
        with pytest.raises(ValueError, match="subprotocol"):
            async with c.websocket(echo.ws_url, subprotocols=["a b"]):
                pass
        with pytest.raises(ValueError, match="Sec-WebSocket-Key"):
            async with c.websocket(echo.ws_url, headers={"Sec-WebSocket-Key": "x"}):
                pass
        with pytest.raises(ValueError, match="max_message_size"):
            async with c.websocket(echo.ws_url, max_message_size=0):
                pass
        async with c.websocket(echo.ws_url) as ws:
            with pytest.raises(TypeError, match="send_bytes"):
                await ws.send_text(b"x")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="125"):
                await ws.ping(b"x" * 126)
            await ws.send_bytes(b"b")
            with pytest.raises(aioduct.WebSocketError, match="binary"):
                await ws.receive_text()


# -- hostile servers (scripted) ----------------------------------------------------------------


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    mask: bytes | None = None,
    length: int | None = None,
) -> bytes:
    """One raw frame; ``length`` may lie about the payload's size."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask is not None:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return frame(0x8, struct.pack("!H", code) + reason)


async def accept(
    conn: Conn, req: ServerRequest, *, accept: str | None = None, extra: bytes = b""
) -> None:
    key = req.header("sec-websocket-key")
    assert key is not None and req.header("sec-websocket-version") == "13"
    assert "upgrade" in (req.header("connection") or "").lower()
    value = accept_value(key) if accept is None else accept
    await conn.send(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + value.encode() + b"\r\n" + extra + b"\r\n"
    )


class ServerSide:
    """The client's frames as a wsproto server sees them."""

    def __init__(self) -> None:
        self.ws = Connection(ConnectionType.SERVER)
        self.events: list[object] = []

    async def read(self, conn: Conn, until: type) -> object:
        while True:
            for event in self.ws.events():
                self.events.append(event)
                if isinstance(event, until):
                    return event
            data = await conn.recv()
            self.ws.receive_data(data or None)


async def test_bad_accept_fails_the_handshake(script_server: ScriptServer) -> None:
    @script_server.route("/ws")
    async def handler(conn: Conn, req: ServerRequest) -> None:
        await accept(conn, req, accept=accept_value("some other key=="))
        await conn.recv()

    async with aioduct.Client() as c:
        with pytest.raises(aioduct.WebSocketHandshakeError, match="Sec-WebSocket-Accept"):
            async with c.websocket(script_server.url + "/ws"):
                pass
        assert open_connections(c) == 0


async def test_unoffered_subprotocol_and_extension_fail_the_handshake(
    script_server: ScriptServer,
) -> None:
    @script_server.route("/proto")
    async def proto(conn: Conn, req: ServerRequest) -> None:
        await accept(conn, req, extra=b"Sec-WebSocket-Protocol: evil\r\n")
        await conn.recv()

    @script_server.route("/ext")
    async def ext(conn: Conn, req: ServerRequest) -> None:
        await accept(conn, req, extra=b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
        await conn.recv()

    async with aioduct.Client() as c:
        with pytest.raises(aioduct.WebSocketHandshakeError, match="'evil', which was not offered"):
            async with c.websocket(script_server.url + "/proto", subprotocols=["good"]):
                pass
        with pytest.raises(aioduct.WebSocketHandshakeError, match="extensions"):
            async with c.websocket(script_server.url + "/ext"):
                pass


async def test_huge_handshake_header_is_bounded(script_server: ScriptServer) -> None:
    """tungstenite CVE-2023-43669: a 1 MB handshake response head."""

    @script_server.route("/ws")
    async def handler(conn: Conn, req: ServerRequest) -> None:
        await conn.send(
            b"HTTP/1.1 101 Switching Protocols\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n"
        )

    async with aioduct.Client() as c:
        with pytest.raises(aioduct.RemoteProtocolError, match=r"max_response_head_bytes|head"):
            async with c.websocket(script_server.url + "/ws"):
                pass


@pytest.mark.parametrize("announced", [2**63 - 1, 100 * 1024 * 1024])
async def test_oversized_frame_closes_with_1009(
    script_server: ScriptServer, announced: int
) -> None:
    """aiohttp CVE-2026-54274 / curl CVE-2026-11586: a frame header announcing a huge payload
    and a large partial payload -> close 1009 within max_message_size, nothing more held."""
    seen: list[object] = []

    @script_server.route("/ws")
    async def handler(conn: Conn, req: ServerRequest) -> None:
        await accept(conn, req)
        await conn.send(frame(0x2, b"\x00" * 200_000, length=announced))
        side = ServerSide()
        seen.append(await side.read(conn, CloseConnection))

    async with aioduct.Client() as c:
        async with c.websocket(script_server.url + "/ws", max_message_size=65536) as ws:
            with pytest.raises(aioduct.WebSocketClosed, match="max_message_size=65536") as info:
                await ws.receive()
            assert info.value.code == 1009 and ws.close_code == 1009
    script_server.wait_for(lambda: bool(seen))
    assert isinstance(seen[0], CloseConnection) and seen[0].code == 1009


async def test_fragmented_message_over_the_limit_closes_with_1009(
    script_server: ScriptServer,
) -> None:
    @script_server.route("/ws")
    async def handler(conn: Conn, req: ServerRequest) -> None:
        await accept(conn, req)
        await conn.send(frame(0x1, b"a" * 1000, fin=False))
        for _ in range(200):
            await conn.send(frame(0x0, b"a" * 1000, fin=False))
        await conn.recv()

    async with aioduct.Client() as c:
        async with c.websocket(script_server.url + "/ws", max_message_size=50_000) as ws:
            with pytest.raises(aioduct.WebSocketClosed) as info:
                await ws.receive()
            assert info.value.code == 1009


async def test_close_handshake_never_finished_times_out(script_server: ScriptServer) -> None:
    @script_server.route("/ws")
    async def handler(conn: Conn, req: ServerRequest) -> None:
        await accept(conn, req)
        while await conn.recv():  # reads the close frame, never answers
            pass

    async with aioduct.Client() as c:
        ws_cm = c.websocket(script_server.url + "/ws", close_timeout=0.2)
        ws = await ws_cm.__aenter__()
        with pytest.raises(aioduct.WebSocketClosed, match=r"close_timeout=0\.2s") as info:
            await ws.close()
        assert info.value.code == 1006 and ws.close_code == 1006
        await ws_cm.__aexit__(None, None, None)  # already closed: nothing more


def test_close_handshake_timeout_on_the_blocking_client(script_server: ScriptServer) -> None:
    @script_server.route("/ws")
    async def handler(conn: Conn, req: ServerRequest) -> None:
        await accept(conn, req)
        while await conn.recv():
            pass

    with aioduct.BlockingClient() as c:
        with pytest.raises(aioduct.WebSocketClosed, match="did not answer the close frame"):
            with c.websocket(script_server.url + "/ws", close_timeout=0.2):
                pass


async def test_dropped_connection_is_abnormal_closure(script_server: ScriptServer) -> None:
    @script_server.route("/ws")
    async def handler(conn: Conn, req: ServerRequest) -> None:
        await accept(conn, req)
        await conn.send(frame(0x1, b"last words"))
        conn.close()

    async with aioduct.Client() as c, c.websocket(script_server.url + "/ws") as ws:
        assert await ws.receive() == "last words"
        with pytest.raises(aioduct.WebSocketClosed, match="without a close frame") as info:
            async for _ in ws:
                pass
        assert info.value.code == 1006


async def test_masked_frame_from_the_server_fails_with_1002(script_server: ScriptServer) -> None:
    seen: list[object] = []

    @script_server.route("/ws")
    async def handler(conn: Conn, req: ServerRequest) -> None:
        await accept(conn, req)
        await conn.send(frame(0x1, b"masked", mask=b"abcd"))
        seen.append(await ServerSide().read(conn, CloseConnection))

    async with aioduct.Client() as c, c.websocket(script_server.url + "/ws") as ws:
        with pytest.raises(aioduct.WebSocketClosed, match="broke the WebSocket protocol"):
            await ws.receive()
        assert ws.close_code == 1002
    script_server.wait_for(lambda: bool(seen))
    assert seen[0].code == 1002  # type: ignore[attr-defined]


async def test_client_frames_are_masked_with_fresh_keys(script_server: ScriptServer) -> None:
    """curl CVE-2025-10148: every frame gets its own random 32-bit mask."""
    masks: list[bytes] = []

    @script_server.route("/ws")
    async def handler(conn: Conn, req: ServerRequest) -> None:
        await accept(conn, req)
        buf = b""
        while len(masks) < 100:
            buf += await conn.recv()
            while len(buf) >= 6:
                assert buf[1] & 0x80, "client frame not masked"
                n = buf[1] & 0x7F
                assert n < 126
                if len(buf) < 6 + n:
                    break
                masks.append(buf[2:6])
                buf = buf[6 + n :]
        await conn.send(close_frame(1000))
        await conn.recv()

    async with aioduct.Client() as c, c.websocket(script_server.url + "/ws") as ws:
        for i in range(100):
            await ws.send_text(f"frame {i}")
        assert [m async for m in ws] == []
    assert len(masks) == 100 and len(set(masks)) == 100


async def test_ping_flood_and_odd_control_frames(script_server: ScriptServer) -> None:
    """curl CVE-2025-5399 / CVE-2026-11586: pings are answered as read (nothing queued),
    zero-length control frames are fine, a fragmented control frame fails with 1002."""
    pongs: list[int] = []

    @script_server.route("/ws")
    async def handler(conn: Conn, req: ServerRequest) -> None:
        await accept(conn, req)
        await conn.send(frame(0x9) * 5000 + frame(0xA) + frame(0x1, b"after pings"))
        side = ServerSide()
        while len([e for e in side.events if isinstance(e, Pong)]) < 5000:
            await side.read(conn, Pong)
        pongs.append(len(side.events))
        await conn.send(frame(0x9, b"frag", fin=False))
        await side.read(conn, CloseConnection)

    async with aioduct.Client() as c, c.websocket(script_server.url + "/ws") as ws:
        assert await ws.receive() == "after pings"
        with pytest.raises(aioduct.WebSocketClosed) as info:
            await ws.receive()
        assert info.value.code == 1002
    script_server.wait_for(lambda: bool(pongs))
    assert pongs == [5000]


async def test_close_from_another_task_ends_the_reader(echo: ASGIServer) -> None:
    async with aioduct.Client() as c, c.websocket(echo.ws_url) as ws:

        async def reader() -> list[str | bytes]:
            return [m async for m in ws]

        task = asyncio.create_task(reader())
        await ws.send_text("x")
        for _ in range(1000):  # until the reader waits in receive()
            if task.done() or ws._reading:
                break
            await asyncio.sleep(0.01)
        await ws.close()
        assert await task in (["x"], [])
        assert ws.close_code == 1000


async def test_server_messages_in_both_directions(script_server: ScriptServer) -> None:
    """The server's own frames (fragmented text, binary, a close with reason) decode."""

    @script_server.route("/ws")
    async def handler(conn: Conn, req: ServerRequest) -> None:
        await accept(conn, req)
        await conn.send(frame(0x1, "hé".encode()[:2], fin=False) + frame(0x0, "hé".encode()[2:]))
        await conn.send(frame(0x2, b"\x01\x02"))
        side = ServerSide()
        got = await side.read(conn, TextMessage)
        assert isinstance(got, TextMessage) and got.data == "reply"
        await conn.send(close_frame(1001, b"going away"))
        closing = await side.read(conn, CloseConnection)
        assert isinstance(closing, CloseConnection) and closing.code == 1001
        assert not [e for e in side.events if isinstance(e, BytesMessage)]

    async with aioduct.Client() as c, c.websocket(script_server.url + "/ws") as ws:
        assert await ws.receive() == "hé"
        assert await ws.receive() == b"\x01\x02"
        await ws.send_text("reply")
        assert [m async for m in ws] == []
        assert (ws.close_code, ws.close_reason) == (1001, "going away")


async def test_https_server_without_h2_gets_an_upgrade(
    tls_script_server: ScriptServer, tls_ca: TLSMaterial
) -> None:
    """HTTP/2 offered by ALPN, the server picks HTTP/1.1: the extended CONNECT attempt
    gives way to an Upgrade on the same connection."""

    @tls_script_server.route("/ws")
    async def handler(conn: Conn, req: ServerRequest) -> None:
        await accept(conn, req)
        side = ServerSide()
        got = await side.read(conn, TextMessage)
        assert isinstance(got, TextMessage)
        await conn.send(frame(0x1, got.data.upper().encode()) + close_frame(1000))
        await side.read(conn, CloseConnection)

    async with aioduct.Client(verify=tls_ca.ca_pem_path) as c:
        async with c.websocket(tls_script_server.url.replace("https", "wss") + "/ws") as ws:
            assert ws.http_version == "HTTP/1.1"
            await ws.send_text("tls")
            assert [m async for m in ws] == ["TLS"]
    assert tls_script_server.connections_accepted == 1
