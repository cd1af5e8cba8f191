"""HTTP3Connection: HTTP/3 over QUIC, shared by concurrent requests like HTTP/2.

QUIC is a sans-I/O state machine in aioquic (``QuicConnection`` takes datagrams and the
time, gives datagrams and a timer; ``H3Connection`` turns stream data into HTTP/3
events), so this module only moves datagrams through the runtime's
:class:`~aioduct.runtimes.Datagrams` and dispatches events to per-request exchanges --
the same :class:`~aioduct.http2.H2Exchange` objects HTTP/2 uses, driven through a small
adapter (:class:`_QuicStreams`) that gives them the operations they call on HTTP/2's
protocol object. The engine, the pool and the streaming body therefore treat an HTTP/3
connection exactly as a multiplexed HTTP/2 one.

One reader task per connection (on runtimes with background tasks) waits for datagrams
until QUIC's next timer, feeds them in, and handles the timer when it fires: that is
where loss recovery, ACKs and the idle timeout happen. On the blocking runtime the
request waiting for its stream does the same inline (:meth:`read_inline`).

Failure boundaries follow HTTP/2's: a stream reset fails that request; a connection
close (idle timeout, the server's CONNECTION_CLOSE, a stateless reset, a protocol
error) fails every stream in flight with the error code's name in the message; a
request the server never saw (the connection was already closing) is retried on a new
connection by the engine. Datagrams that do not decrypt are dropped by aioquic, so a
peer sending garbage cannot wedge the client: at worst the idle timeout ends it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from aioquic.h3.connection import H3_ALPN, ErrorCode, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted, StreamReset
from aioquic.quic.packet import QuicErrorCode

from .config import Http3Config
from .connection import StreamNotProcessed
from .errors import AioductError, ConnectError, ReadError, RemoteProtocolError, WriteError
from .http2 import H2Exchange, SharedConnection, StreamResetError, _expire
from .models import Request
from .pool import PoolKey
from .protocol.http2 import ResponseReceived
from .runtimes import Datagrams, Expired, Runtime
from .timeouts import Deadlines

if TYPE_CHECKING:
    from aioquic.tls import SessionTicket

__all__ = ["HTTP3Connection", "quic_configuration"]

#: H3_REQUEST_CANCELLED (RFC 9114 §8.1): how we abandon a stream we no longer read.
_CANCELLED: Final = ErrorCode.H3_REQUEST_CANCELLED
#: 1xx heads accepted on one stream before the response is refused (as for HTTP/2).
_MAX_INTERIM: Final = 100
_SAFE_METHODS: Final = frozenset(("GET", "HEAD", "OPTIONS", "TRACE"))
#: QuicConnectionState.CLOSING's value: this state and the later ones take no streams.
_CLOSING_STATE: Final = 2


def error_name(code: int) -> str:
    """``H3_NO_ERROR``, ``IDLE_TIMEOUT``-style name of a QUIC or HTTP/3 error code."""
    for enum in (ErrorCode, QuicErrorCode):
        try:
            return enum(code).name
        except ValueError:
            continue
    if 0x100 <= code <= 0x1FF:
        return f"CRYPTO_ERROR (TLS alert {code - 0x100})"
    return f"error 0x{code:x}"


def quic_configuration(
    config: Http3Config,
    server_name: str,
    *,
    verify: bool | str,
    cafile: str | None,
    session_ticket: SessionTicket | None = None,
) -> QuicConfiguration:
    """aioquic's client configuration for one origin.

    aioquic runs its own TLS 1.3 (not the ``ssl`` module), so trust comes as files:
    ``cafile`` is the CA bundle the TCP connections use (certifi's, or ``verify=``'s).
    """
    quic = QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN,
        server_name=server_name,
        verify_mode=ssl.CERT_REQUIRED if verify else ssl.CERT_NONE,
        max_data=config.max_data,
        max_stream_data=config.max_stream_data,
        idle_timeout=config.idle_timeout,
        max_datagram_size=config.max_datagram_size,
        congestion_control_algorithm=config.congestion_control,
    )
    if verify and cafile is not None:
        quic.load_verify_locations(cafile=cafile)
    quic.session_ticket = session_ticket
    return quic


class _H3Connection(H3Connection):
    """aioquic's HTTP/3 layer with the QPACK table size and blocked-stream limit we
    offer the server (it has them fixed at 4096 and 16 otherwise)."""

    def __init__(self, quic: QuicConnection, table_capacity: int, blocked_streams: int) -> None:
        self._offer = (table_capacity, blocked_streams)
        super().__init__(quic)

    def _init_connection(self) -> None:
        # Runs at the end of H3Connection.__init__, before SETTINGS are sent.
        import pylsqpack

        self._max_table_capacity, self._blocked_streams = self._offer
        self._decoder = pylsqpack.Decoder(*self._offer)
        super()._init_connection()


class _Writer:
    """What an exchange asks of ``conn.stream`` when it sends: QUIC buffers every
    stream itself and paces it by flow and congestion control, so never paused."""

    writing_paused = False

    async def drain(self, deadline: float | None) -> None:
        return None


class _QuicStreams:
    """The operations :class:`H2Exchange` calls on its connection's protocol object,
    done on an HTTP/3 connection."""

    def __init__(self, conn: HTTP3Connection) -> None:
        self._conn = conn

    def acknowledge(self, stream_id: int, flow: int) -> None:
        # QUIC credits stream and connection windows itself as data is delivered.
        return None

    def send_body(self, stream_id: int, data: memoryview, end: bool) -> int:
        conn = self._conn
        stream = conn.quic._streams.get(stream_id)
        if stream is not None and len(stream.sender._buffer) > conn.send_buffer_limit:
            return 0  # wait until the peer acknowledges some (the reader wakes us)
        conn.h3.send_data(stream_id, bytes(data), end_stream=end)
        return len(data)

    def end_stream(self, stream_id: int) -> None:
        self._conn.h3.send_data(stream_id, b"", end_stream=True)

    def stream_is_open(self, stream_id: int) -> bool:
        stream = self._conn.quic._streams.get(stream_id)
        return stream is not None and not (
            stream.sender.is_finished and stream.receiver.is_finished
        )

    def reset(self, stream_id: int, _h2_code: int) -> None:
        quic = self._conn.quic
        stream = quic._streams.get(stream_id)
        if stream is None or self._conn.error is not None:
            return
        if not stream.sender.is_finished:
            quic.reset_stream(stream_id, _CANCELLED)
        if not stream.receiver.is_finished:
            quic.stop_stream(stream_id, _CANCELLED)


class HTTP3Connection(SharedConnection):
    """An HTTP/3 connection shared by concurrent requests (see module docstring)."""

    multiplexed: Literal[True] = True
    http_version: Final = "HTTP/3"

    def __init__(
        self,
        udp: Datagrams,
        key: PoolKey,
        runtime: Runtime,
        config: Http3Config,
        quic_config: QuicConfiguration,
        *,
        early_data: bool = False,
        on_ticket: Callable[[SessionTicket], None] | None = None,
    ) -> None:
        self.udp = udp
        self.key = key
        self.runtime = runtime
        self.config = config
        self.loop = asyncio.get_running_loop() if runtime.background else None
        self.quic = QuicConnection(configuration=quic_config, session_ticket_handler=on_ticket)
        self.h3 = _H3Connection(
            self.quic, config.qpack_max_table_capacity, config.qpack_blocked_streams
        )
        self.proto = _QuicStreams(self)
        self.stream = _Writer()
        self.send_buffer_limit = config.max_send_buf_size
        self.early_data = early_data and quic_config.session_ticket is not None
        self._init_shared()
        self.handshake_done = False
        #: What the handshake said (for tests and Timings): resumed, 0-RTT accepted.
        self.session_resumed = False
        self.early_data_accepted = False
        self._handshake: asyncio.Future[None] | None = (
            self.loop.create_future() if self.loop is not None else None
        )
        self._interim: dict[int, int] = {}
        self._reader: Any = None
        self._reader_deadline: float | None = None
        self.max_streams = 100  # until the transport parameters say

    # -- lifecycle -------------------------------------------------------------------------

    def peer_certificate_der(self) -> bytes | None:
        """The server's certificate (DER) from this connection's handshake, for pinning;
        ``None`` when the handshake presented none (a resumed session)."""
        cert = getattr(self.quic.tls, "_peer_certificate", None)
        if cert is None:
            return None
        from cryptography.hazmat.primitives.serialization import Encoding

        return bytes(cert.public_bytes(Encoding.DER))

    async def start(self, deadline: float | None) -> None:
        """Send the first flight; return once the handshake completed -- or at once when
        a resumed session allows 0-RTT (requests then wait or go early, see send())."""
        self.quic.connect(self.udp.peer_address, now=self.runtime.now())
        self.flush()
        if self.loop is None:
            try:
                while not self.handshake_done and self.error is None:
                    await self.read_inline(deadline)
            except Expired:
                self.close()
                raise
            if self.error is not None:
                raise ConnectError(f"QUIC handshake failed: {self.error}") from None
            return
        self._reader = self.runtime.spawn(self._read_loop())
        if self.early_data:
            return
        await self.wait_handshake(deadline)

    async def wait_handshake(self, deadline: float | None) -> None:
        if self.handshake_done:
            return
        if self.loop is None:
            while not self.handshake_done and self.error is None:
                await self.read_inline(deadline)
            if self.error is not None:
                raise self.error
            return
        waiter = self._handshake
        assert waiter is not None
        handle = self.loop.call_at(deadline, _expire, waiter) if deadline is not None else None
        try:
            await asyncio.shield(waiter)
        except Expired:
            self.close()
            raise
        except AioductError as exc:
            raise ConnectError(f"QUIC handshake failed: {exc}") from None
        finally:
            if handle is not None:
                handle.cancel()

    def is_alive(self) -> bool:
        return self.error is None and not self._closing()

    def has_capacity(self) -> bool:
        return self.is_alive() and self.in_use < self.max_streams

    def is_ready(self) -> bool:
        return self.has_capacity()

    def _closing(self) -> bool:
        quic = self.quic
        return quic._close_event is not None or quic._state.value >= _CLOSING_STATE

    def close(self) -> None:
        """Close now (CONNECTION_CLOSE, best effort); live streams fail."""
        if self.error is None:
            self.quic.close(error_code=ErrorCode.H3_NO_ERROR, reason_phrase="")
            self.flush()
            self._fail(ReadError("the HTTP/3 connection was closed by the client"))
        self.udp.close()

    def _fail(self, error: AioductError) -> None:
        if self.error is not None:
            return
        self.error = error
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        handshake = self._handshake
        if handshake is not None and not handshake.done():
            handshake.set_exception(error)
            handshake.exception()
        for exchange in list(self.exchanges.values()):
            exchange._fail(error)
        self.udp.close()
        if self.on_change is not None:
            self.on_change(self)

    def _release(self, exchange: H2Exchange) -> None:
        self.exchanges.pop(exchange.stream_id, None)
        self._interim.pop(exchange.stream_id, None)
        self.in_use -= 1
        self.flush_soon()
        if self.on_change is not None:
            self.on_change(self)

    # -- output ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Send what QUIC has queued, and re-arm the reader if its timer moved earlier."""
        udp = self.udp
        try:
            for data, _addr in self.quic.datagrams_to_send(now=self.runtime.now()):
                udp.send(data)
        except OSError as exc:
            self._fail(WriteError(f"HTTP/3 connection failed while sending: {exc}"))
            return
        waiting_until = self._reader_deadline
        timer = self.quic.get_timer()
        if timer is not None and (waiting_until is None or timer < waiting_until):
            udp.wake()

    # -- requests --------------------------------------------------------------------------

    async def send(
        self,
        request: Request,
        deadlines: Deadlines,
        protocol: str | None = None,
        *,
        collect: int | None = None,
    ) -> tuple[H2Exchange, ResponseReceived, float]:
        """Open a stream for ``request`` (the caller holds a slot), send it, await the head.

        Before the handshake completes only a safe request goes out (in 0-RTT, which a
        server may replay: RFC 9114 §10.9); any other waits for the handshake.
        """
        if protocol is not None:
            self._give_back()
            raise RemoteProtocolError("extended CONNECT over HTTP/3 is not supported yet")
        if not self.handshake_done and request.method not in _SAFE_METHODS:
            try:
                await self.wait_handshake(deadlines.for_connect())
            except BaseException:
                self._give_back()
                raise
        if self.error is not None or self._closing():
            self._give_back()
            raise StreamNotProcessed("the HTTP/3 connection stopped taking new requests")
        url = request.url
        content = request.content
        body_stream = request.stream
        has_body = bool(content) or body_stream is not None
        fields = [
            (b":method", request.method.encode()),
            (b":scheme", url.scheme.encode()),
            (b":authority", url.host_header.encode()),
            (b":path", url.target.encode()),
        ]
        for name, value in request.headers.raw():
            lower = name.lower()
            if lower in ("host", "connection", "keep-alive", "transfer-encoding", "upgrade"):
                continue  # RFC 9114 §4.2: connection-specific fields are not sent
            fields.append((lower.encode(), value.encode("latin-1")))
        if content is not None and "content-length" not in request.headers:
            fields.append((b"content-length", str(len(content)).encode()))
        try:
            stream_id = self.quic.get_next_available_stream_id()
            self.h3.send_headers(stream_id, fields, end_stream=not has_body)
        except BaseException:
            self._give_back()
            raise
        exchange = H2Exchange.opened(self, stream_id, deadlines, collect)
        if has_body:
            self.flush()
        else:
            self.flush_soon()
        wait = None
        if has_body and request.expect_continue:  # as on HTTP/2 (RFC 9110 §10.1.1)
            wait = partial(self._await_continue, exchange, deadlines)
        head, sent_at = await exchange.transmit(content, body_stream, wait)
        return exchange, head, sent_at

    def _give_back(self) -> None:
        self.in_use -= 1
        if self.on_change is not None:
            self.on_change(self)

    # -- input -----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        udp = self.udp
        try:
            while True:
                timer = self.quic.get_timer()
                self._reader_deadline = timer
                try:
                    datagrams = await udp.recv(timer)
                except Expired:
                    self.quic.handle_timer(now=self.runtime.now())
                    self._process()
                    continue
                finally:
                    self._reader_deadline = None
                self._received(datagrams)
        except asyncio.CancelledError:
            self._fail(ReadError("the HTTP/3 connection was closed"))
            raise
        except OSError as exc:
            self._fail(ReadError(f"HTTP/3 connection failed while reading: {exc}"))

    async def read_inline(self, deadline: float | None) -> None:
        """Without a reader task: wait for datagrams (or QUIC's timer) and dispatch.

        Raises :class:`Expired` when ``deadline`` passes first.
        """
        timer = self.quic.get_timer()
        wait_until = (
            timer if deadline is None or (timer is not None and timer < deadline) else deadline
        )
        try:
            datagrams = await self.udp.recv(wait_until)
        except Expired:
            now = self.runtime.now()
            if timer is not None and now >= timer:
                self.quic.handle_timer(now=now)
                self._process()
            if deadline is not None and now >= deadline:
                raise
            return
        except OSError as exc:
            self._fail(ReadError(f"HTTP/3 connection failed while reading: {exc}"))
            return
        self._received(datagrams)

    def _received(self, datagrams: list[bytes]) -> None:
        quic = self.quic
        now = self.runtime.now()
        addr = self.udp.peer_address
        for data in datagrams:
            quic.receive_datagram(data, addr, now)
        self._process()

    def _process(self) -> None:
        """Dispatch QUIC and HTTP/3 events to the exchanges, then send what is due."""
        quic, h3 = self.quic, self.h3
        while (event := quic.next_event()) is not None:
            kind = type(event)
            if kind is HandshakeCompleted:
                self._handshake_completed(cast(HandshakeCompleted, event))
            elif kind is ConnectionTerminated:
                self._terminated(cast(ConnectionTerminated, event))
                return
            elif kind is StreamReset:
                ev = cast(StreamReset, event)
                exchange = self.exchanges.get(ev.stream_id)
                if exchange is not None:
                    exchange._fail(self._reset_error(ev.error_code))
            for h3_event in h3.handle_event(event):
                self._h3_event(h3_event)
        if self.error is None:
            self.flush_soon()
        for exchange in self.exchanges.values():
            if exchange._send_waiter is not None:
                exchange._notify_send()  # acknowledged data may have freed send buffer

    def _handshake_completed(self, event: HandshakeCompleted) -> None:
        self.handshake_done = True
        self.session_resumed = event.session_resumed
        self.early_data_accepted = event.early_data_accepted
        limit = self.quic._remote_max_streams_bidi
        if limit:
            self.max_streams = limit
        waiter = self._handshake
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.on_change is not None:
            self.on_change(self)

    def _terminated(self, event: ConnectionTerminated) -> None:
        name = error_name(event.error_code)
        reason = f", {event.reason_phrase!r}" if event.reason_phrase else ""
        if not self.handshake_done:
            error: AioductError = ConnectError(
                f"the QUIC handshake with {self.key.host}:{self.key.port} failed ({name}{reason})"
            )
        elif event.error_code in (ErrorCode.H3_NO_ERROR, QuicErrorCode.NO_ERROR):
            error = ReadError(f"the server closed the HTTP/3 connection ({name}{reason})")
        else:
            error = RemoteProtocolError(f"the HTTP/3 connection failed: {name}{reason}")
        # Whether the server processed the requests in flight is unknown (only an
        # HTTP/3 GOAWAY would say), so they fail rather than being sent again.
        self._fail(error)

    def _reset_error(self, code: int) -> AioductError:
        if code == ErrorCode.H3_REQUEST_REJECTED:
            return StreamNotProcessed("the server rejected the HTTP/3 request (not processed)")
        return StreamResetError(
            f"the server reset the HTTP/3 stream: {error_name(code)}", error_code=code
        )

    def _h3_event(self, event: Any) -> None:
        exchange = self.exchanges.get(event.stream_id)
        if exchange is None:
            return
        if type(event) is HeadersReceived:
            if exchange.head is not None:  # trailers
                exchange.trailers = [
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers
                ]
                if event.stream_ended:
                    exchange.ended = True
                    exchange._notify()
                return
            head = self._head(exchange, event)
            if head is None:
                return
            exchange.head = head
            exchange.head_at = perf_counter()
            if event.stream_ended:
                exchange.ended = True
                exchange._notify()
            elif not exchange.collecting:
                exchange._notify()
        elif type(event) is DataReceived:
            if event.data:
                exchange.chunks.append((event.data, 0))
                exchange.buffered += len(event.data)
            if event.stream_ended:
                exchange.ended = True
            if not exchange.collecting or exchange.ended or exchange.buffered > exchange.limit:
                exchange._notify()

    def _head(self, exchange: H2Exchange, event: HeadersReceived) -> ResponseReceived | None:
        status = None
        fields: list[tuple[str, str]] = []
        try:
            for name, value in event.headers:
                if name == b":status":
                    status = int(value)
                elif not name.startswith(b":"):
                    fields.append((name.decode("ascii"), value.decode("latin-1")))
        except (ValueError, UnicodeDecodeError):
            status = None
        if status is None or not 100 <= status <= 999:
            self._stream_error(exchange, "a response without a valid :status")
            return None
        if status < 200:
            seen = self._interim[exchange.stream_id] = self._interim.get(exchange.stream_id, 0) + 1
            if seen > _MAX_INTERIM:
                self._stream_error(exchange, f"more than {_MAX_INTERIM} interim (1xx) responses")
            elif status == 100 and not exchange.continued:
                exchange.continued = True  # the body may go (Expect: 100-continue)
                exchange._notify()
            return None
        return ResponseReceived(exchange.stream_id, status, fields, bool(event.stream_ended))

    def _stream_error(self, exchange: H2Exchange, what: str) -> None:
        exchange._fail(
            RemoteProtocolError(f"the server sent {what} on HTTP/3 stream {exchange.stream_id}")
        )
        self.proto.reset(exchange.stream_id, 0)
