"""WebSockets over HTTP/3 extended CONNECT (RFC 9220) against aioquic's server on
loopback (aioduct.testing.h3server: aioquic sends SETTINGS_ENABLE_CONNECT_PROTOCOL,
wsproto frames the server side), on Client and BlockingClient; and the fallback to
HTTP/1.1 Upgrade over TCP when an HTTP/3 server does not offer extended CONNECT.

hypercorn's HTTP/3 (``--quic-bind``) also answers extended CONNECT, but its QUIC server
task dies with a KeyError when DATA arrives on a WebSocket stream it has finished with
(the client's END_STREAM after the close handshake), so it cannot serve these tests."""

from __future__ import annotations

import asyncio

import pytest

import aioduct
from aioduct.testing.asgi import ASGIServer, echo_websocket_app
from aioduct.testing.h3server import H3Request, H3Server
from aioduct.testing.nginx import TLSMaterial

from .conftest import options


def wss(srv: H3Server) -> str:
    return srv.url.replace("https", "wss", 1)


async def test_websocket_over_http3(h3: H3Server, tls_ca: TLSMaterial) -> None:
    async with (
        aioduct.Client(**options(tls_ca)) as client,  # type: ignore[arg-type]
        client.websocket(wss(h3) + "/ws/chat", subprotocols=["echo.v1"]) as ws,
    ):
        assert ws.http_version == "HTTP/3" and ws.subprotocol == "echo.v1"
        await ws.send_text("hello over QUIC")
        assert await ws.receive_text() == "hello over QUIC"
        big = bytes(range(256)) * 12288  # 3 MiB: past the flow-control windows both ways
        await ws.send_bytes(big)
        assert await ws.receive_bytes() == big
        # Plain requests share the QUIC connection with the WebSocket's stream.
        r = await client.get(h3.url + "/small")
        assert (r.http_version, r.content) == ("HTTP/3", b"Hello, World!")
    assert h3.connections_accepted == 1
    method, path = h3.requests[0][2:]
    assert (method, path) == ("CONNECT", "/ws/chat")


async def test_several_websockets_on_one_connection(h3: H3Server, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(**options(tls_ca)) as client:  # type: ignore[arg-type]

        async def talk(i: int) -> str:
            async with client.websocket(f"{wss(h3)}/ws/{i}") as ws:
                await ws.send_text(f"#{i}")
                return await ws.receive_text()

        assert await asyncio.gather(*(talk(i) for i in range(5))) == [f"#{i}" for i in range(5)]
        again = await talk(5)  # the connection outlives its WebSocket streams
    assert again == "#5" and h3.connections_accepted == 1


async def test_server_closing_the_websocket(h3: H3Server, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(**options(tls_ca)) as client:  # type: ignore[arg-type]
        async with client.websocket(wss(h3) + "/ws/close/4001") as ws:
            with pytest.raises(aioduct.WebSocketClosed) as info:
                await ws.receive_text()
            assert info.value.code == 4001
        r = await client.get(h3.url + "/small")
    assert r.content == b"Hello, World!" and h3.connections_accepted == 1


async def test_refused_websocket(h3: H3Server, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(**options(tls_ca)) as client:  # type: ignore[arg-type]
        with pytest.raises(aioduct.WebSocketHandshakeError, match="404"):
            async with client.websocket(wss(h3) + "/nothing-here"):
                pass
        assert (await client.get(h3.url + "/small")).status == 200
    assert h3.connections_accepted == 1


def test_blocking_websocket_over_http3(h3: H3Server, tls_ca: TLSMaterial) -> None:
    with (
        aioduct.BlockingClient(**options(tls_ca)) as client,  # type: ignore[arg-type]
        client.websocket(wss(h3) + "/ws/b") as ws,
    ):
        assert ws.http_version == "HTTP/3"
        ws.send_text("blocking")
        assert ws.receive_text() == "blocking"
        ws.send_bytes(b"\x00" * 100_000)
        assert ws.receive_bytes() == b"\x00" * 100_000


async def test_no_extended_connect_falls_back_to_upgrade_over_tcp(tls_ca: TLSMaterial) -> None:
    """An HTTP/3 server without SETTINGS_ENABLE_CONNECT_PROTOCOL gets no extended
    CONNECT (RFC 9220 §3): the WebSocket goes over HTTP/1.1 Upgrade on TCP instead."""
    with (
        ASGIServer(echo_websocket_app, tls=tls_ca) as tcp,
        # HTTP/3 (without the setting) on the UDP port of the same number.
        H3Server(tls_ca.files, port=tcp.port, enable_connect_protocol=False) as h3,
    ):
        async with (
            aioduct.Client(**options(tls_ca)) as client,  # type: ignore[arg-type]
            client.websocket(f"wss://localhost:{tcp.port}/fallback") as ws,
        ):
            assert ws.http_version == "HTTP/1.1"
            await ws.send_text("over TCP")
            assert await ws.receive_text() == "over TCP"
        assert h3.connections_accepted == 1 and not h3.requests


async def test_frame_announcing_a_huge_payload_closes_1009(
    h3: H3Server, tls_ca: TLSMaterial
) -> None:
    """A WebSocket frame header announcing 100 MB (then a little of it) on the HTTP/3
    stream: closed with 1009 at max_message_size, not buffered."""

    @h3.route("/ws/huge")
    async def huge(req: H3Request) -> None:
        req.send_headers(200)
        req.send_data(b"\x82\x7f" + (100 * 1024 * 1024).to_bytes(8, "big") + b"x" * 300_000)
        await req.body()

    async with (
        aioduct.Client(**options(tls_ca)) as client,  # type: ignore[arg-type]
        client.websocket(wss(h3) + "/ws/huge", max_message_size=64 * 1024) as ws,
    ):
        with pytest.raises(aioduct.WebSocketClosed) as info:
            await ws.receive_bytes()
        assert info.value.code == 1009
        assert (await client.get(h3.url + "/small")).status == 200
