"""Upgraded connections: a bidirectional byte stream after a protocol switch.

Two ways lead here, one API: an HTTP/1.1 ``101 Switching Protocols`` response (the
request carries ``Connection: Upgrade`` and ``Upgrade: ...`` headers) hands over the
whole connection; an HTTP/2 extended CONNECT (RFC 8441: ``method="CONNECT"`` and
``protocol="websocket"``) answered with 2xx turns one *stream* into the tunnel, and the
connection's other streams carry on. Either way ``await response.upgrade()`` returns an
:class:`Upgraded`::

    r = await client.request("CONNECT", "https://example.org/chat", protocol="websocket")
    tunnel = await r.upgrade()
    await tunnel.send(b"...")        # waits for HTTP/2 flow-control window
    data = await tunnel.receive()    # b"" once the server finished its side
    await tunnel.aclose()

The tunnel has no read or total deadline (it is long-lived by nature); wrap calls in
``asyncio.timeout()`` to bound them. An upgraded connection never returns to the pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .errors import ReadError, WriteError
from .runtimes import Stream

if TYPE_CHECKING:
    from .http2 import H2Exchange

__all__ = ["H1Upgraded", "H2Tunnel", "Upgraded"]


class Upgraded(Protocol):
    """A bidirectional byte stream to the server, after an upgrade."""

    http_version: str

    async def send(self, data: bytes) -> None:
        """Send bytes (waits while the peer or the socket cannot take more)."""

    async def receive(self, deadline: float | None = None) -> bytes:
        """The next bytes from the server; ``b""`` once it closed its side.

        ``deadline`` (on the runtime's clock) bounds the wait: past it,
        :class:`~aioduct.runtimes.Expired` (a WebSocket's close handshake uses this).
        """

    async def send_eof(self) -> None:
        """Finish our side; the server may keep sending."""

    async def aclose(self) -> None:
        """Close the tunnel (on HTTP/2 only its stream; the connection lives on)."""


class H1Upgraded:
    """The connection itself, after ``101 Switching Protocols``."""

    http_version = "HTTP/1.1"

    def __init__(self, stream: Stream, early: bytes) -> None:
        self._stream = stream
        self._early = early

    async def send(self, data: bytes) -> None:
        try:
            self._stream.write(data)
            if self._stream.writing_paused:
                await self._stream.drain(None)
        except OSError as exc:
            raise WriteError(f"upgraded connection failed while sending: {exc}") from None

    async def receive(self, deadline: float | None = None) -> bytes:
        if self._early:
            data, self._early = self._early, b""
            return data
        try:
            return await self._stream.read(deadline)
        except OSError as exc:
            raise ReadError(f"upgraded connection failed while reading: {exc}") from None

    async def send_eof(self) -> None:
        # Stream has no half-close; closing is the only way to signal the end.
        self._stream.close()

    async def aclose(self) -> None:
        self._stream.close()


class H2Tunnel:
    """One HTTP/2 stream after an extended CONNECT (or an HTTP/3 one: RFC 9220, the
    same exchange); flow-controlled both ways."""

    http_version: str = "HTTP/2"

    def __init__(self, exchange: H2Exchange) -> None:
        exchange.tunnel = True
        self.http_version = exchange._conn.http_version  # "HTTP/2" or "HTTP/3"
        self._exchange = exchange
        self._eof_sent = False

    @property
    def remote_ended(self) -> bool:
        """The server ended its side of the stream (END_STREAM) or reset it."""
        exchange = self._exchange
        return exchange.ended or exchange.released or exchange.error is not None

    async def send(self, data: bytes) -> None:
        if self._eof_sent:
            raise WriteError("send() after send_eof() on an HTTP/2 tunnel")
        if self._exchange.released:
            raise WriteError("the HTTP/2 tunnel is closed")
        if data:
            await self._exchange.send_body(data, False)

    async def receive(self, deadline: float | None = None) -> bytes:
        if deadline is not None:
            exchange = self._exchange
            while not exchange.chunks:
                if exchange.error is not None:
                    raise exchange.error
                if exchange.ended or exchange.released:
                    return b""
                await exchange._wait(deadline)  # Expired past the deadline
            return exchange._take()
        chunk = await self._exchange.read_chunk()
        while chunk is not None and not chunk:
            chunk = await self._exchange.read_chunk()
        return chunk or b""

    async def send_eof(self) -> None:
        if not self._eof_sent:
            self._eof_sent = True
            self._exchange.end_request()

    async def aclose(self) -> None:
        self._exchange.abort()
