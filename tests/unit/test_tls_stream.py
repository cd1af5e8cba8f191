"""AsyncioTLSStream driven by hand: a recording transport and a server TLSLayer in memory.

The loop's side of the protocol (``get_buffer``/``buffer_updated``/``eof_received``) is
called directly, so every case -- tickets, flow control, alerts, close_notify -- happens
exactly, with no network and no timing.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest

from aioduct.protocol.tls import TLSLayer
from aioduct.runtimes import Expired
from aioduct.runtimes.asyncio import AsyncioStream, AsyncioTLSStream
from aioduct.testing.nginx import TLSMaterial


class Transport:
    """What the stream asks of an asyncio transport, recorded."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.protocol: Any = None
        self.paused = False
        self.closing = False
        self.aborted = False
        self.buffered = 0  # pretend bytes queued in the kernel's stead

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def write(self, data: bytes) -> None:
        assert not self.closing
        self.sent += data

    def take(self) -> bytes:
        data = bytes(self.sent)
        self.sent.clear()
        return data

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def get_extra_info(self, name: str) -> Any:
        return None


def deliver(stream: AsyncioTLSStream, data: bytes) -> None:
    """Hand ``data`` to the stream as the loop would: into its buffer, in pieces."""
    view = memoryview(data)
    while view:
        buf = stream.get_buffer(len(view))
        n = min(len(buf), len(view))
        buf[:n] = view[:n]
        stream.buffer_updated(n)
        view = view[n:]


async def connected(tls_ca: TLSMaterial) -> tuple[AsyncioTLSStream, Transport, TLSLayer]:
    """A stream whose handshake completed against an in-memory server."""
    transport = Transport()
    plain = AsyncioStream(asyncio.get_running_loop())
    plain.connection_made(transport)  # type: ignore[arg-type]
    client = TLSLayer(tls_ca.client_ssl_context(), server_hostname="localhost")
    stream = AsyncioTLSStream.upgrade(plain, client)
    assert transport.protocol is stream and plain._transport is None
    server = TLSLayer(tls_ca.server_ssl_context(), server_side=True)
    handshake = asyncio.ensure_future(stream.handshake(None))
    await asyncio.sleep(0)
    server.receive_data(transport.take())  # the ClientHello
    assert not server.do_handshake()
    deliver(stream, server.data_to_send())  # ServerHello ... Finished: TLS 1.3 is 1-RTT
    await handshake
    server.receive_data(transport.take())  # the client's Finished
    assert server.do_handshake()
    return stream, transport, server


async def test_tickets_do_not_wake_the_reader_nor_spoil_reuse(tls_ca: TLSMaterial) -> None:
    stream, _transport, server = await connected(tls_ca)
    read = asyncio.ensure_future(stream.read(None))
    await asyncio.sleep(0)
    deliver(stream, server.data_to_send())  # TLS 1.3 session tickets, no data
    await asyncio.sleep(0)
    assert not read.done() and stream.is_reusable()
    assert stream.ssl_object.session is not None and stream.ssl_object.session.has_ticket
    deliver(stream, server.encrypt(b"HTTP/1.1 200 OK\r\n\r\n"))
    assert await read == b"HTTP/1.1 200 OK\r\n\r\n"
    assert stream.is_reusable()
    deliver(stream, server.encrypt(b"unsolicited"))
    assert not stream.is_reusable()


async def test_write_is_one_transport_write_of_records(tls_ca: TLSMaterial) -> None:
    stream, transport, server = await connected(tls_ca)
    stream.write(b"GET / HTTP/1.1\r\n\r\n")
    server.receive_data(transport.take())
    buf = memoryview(bytearray(100))
    assert bytes(buf[: server.read_into(buf)]) == b"GET / HTTP/1.1\r\n\r\n"


async def test_reading_pauses_above_the_high_water_mark(tls_ca: TLSMaterial) -> None:
    stream, transport, server = await connected(tls_ca)
    body = bytes(range(256)) * (5 * 4096)  # 5 MiB: above the 4 MiB mark
    deliver(stream, server.encrypt(body))
    assert transport.paused
    assert await stream.read(None) == body
    assert not transport.paused


async def test_close_notify_then_eof(tls_ca: TLSMaterial) -> None:
    stream, _transport, server = await connected(tls_ca)
    deliver(stream, server.encrypt(b"bye") + server.close())
    assert await stream.read(None) == b"bye"
    assert await stream.read(None) == b""
    assert not stream.is_reusable()


async def test_a_tampered_record_fails_reads_and_drops_the_transport(
    tls_ca: TLSMaterial,
) -> None:
    stream, transport, server = await connected(tls_ca)
    wire = bytearray(server.encrypt(b"x" * 100))
    wire[-1] ^= 0xFF
    deliver(stream, bytes(wire))
    with pytest.raises(ssl.SSLError):
        await stream.read(None)
    assert transport.aborted and not stream.is_reusable()


async def test_close_says_close_notify_when_idle(tls_ca: TLSMaterial) -> None:
    stream, transport, server = await connected(tls_ca)
    stream.close()
    assert transport.closing and not transport.aborted
    server.receive_data(transport.take())
    server.read_into(memoryview(bytearray(10)))
    assert server.close_notify_received
    buf = stream.get_buffer(100)
    assert len(buf) > 0  # a late receive still gets somewhere to go, and is ignored
    stream.buffer_updated(len(buf))


async def test_close_with_unsent_bytes_aborts(tls_ca: TLSMaterial) -> None:
    stream, transport, _server = await connected(tls_ca)
    transport.buffered = 1000
    stream.close()
    assert transport.aborted and transport.take() == b""


async def test_eof_during_the_handshake(tls_ca: TLSMaterial) -> None:
    transport = Transport()
    plain = AsyncioStream(asyncio.get_running_loop())
    plain.connection_made(transport)  # type: ignore[arg-type]
    stream = AsyncioTLSStream.upgrade(
        plain, TLSLayer(tls_ca.client_ssl_context(), server_hostname="localhost")
    )
    handshake = asyncio.ensure_future(stream.handshake(None))
    await asyncio.sleep(0)
    assert transport.take().startswith(b"\x16\x03")  # the ClientHello went out
    stream.eof_received()
    with pytest.raises(ssl.SSLEOFError):
        await handshake


async def test_handshake_deadline(tls_ca: TLSMaterial) -> None:
    transport = Transport()
    loop = asyncio.get_running_loop()
    plain = AsyncioStream(loop)
    plain.connection_made(transport)  # type: ignore[arg-type]
    stream = AsyncioTLSStream.upgrade(
        plain, TLSLayer(tls_ca.client_ssl_context(), server_hostname="localhost")
    )
    with pytest.raises(Expired):
        await stream.handshake(loop.time())


async def test_bytes_received_before_the_upgrade_are_ciphertext(tls_ca: TLSMaterial) -> None:
    """A server that spoke first: its bytes reach the TLS layer, which refuses them."""
    transport = Transport()
    plain = AsyncioStream(asyncio.get_running_loop())
    plain.connection_made(transport)  # type: ignore[arg-type]
    data = b"SSH-2.0-OpenSSH_9.2\r\n"
    plain.get_buffer(len(data))[: len(data)] = data
    plain.buffer_updated(len(data))
    stream = AsyncioTLSStream.upgrade(
        plain, TLSLayer(tls_ca.client_ssl_context(), server_hostname="localhost")
    )
    with pytest.raises(ssl.SSLError, match="WRONG_VERSION_NUMBER"):
        await stream.handshake(None)
    assert transport.aborted
