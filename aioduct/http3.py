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

Flow control follows the consumer as on HTTP/2 (:class:`_QuicConnection`): the
server may run one window ahead of what the reader took, not of what arrived.
A connection can move to a new local UDP socket (:meth:`HTTP3Connection.migrate`), on
request or when a send error says the local path broke.

Failure boundaries follow HTTP/2's: a stream reset fails that request; a GOAWAY
(:class:`_H3Connection` surfaces it) stops new requests and fails the streams it names
as not processed; a connection close (idle timeout, the server's CONNECTION_CLOSE, a
stateless reset, a protocol error) fails every stream in flight with the error code's
name in the message; a request the server never saw (the connection was already
closing, or GOAWAY named it) is retried on a new connection by the engine. Datagrams
that do not decrypt are dropped by aioquic, so a peer sending garbage cannot wedge the
client: at worst the idle timeout ends it.
"""

from __future__ import annotations

import asyncio
import errno
import ssl
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from aioquic._buffer import Buffer, BufferReadError
from aioquic.h3.connection import (
    H3_ALPN,
    ErrorCode,
    FrameError,
    FrameType,
    H3Connection,
    IdError,
    ProtocolError,
    Setting,
    StreamType,
)
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import MAX_STREAM_DATA_FRAME_CAPACITY, QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)
from aioquic.quic.packet import QuicErrorCode, QuicFrameType, pull_quic_transport_parameters

from .config import Http3Config
from .connection import StreamNotProcessed
from .errors import AioductError, ConnectError, ReadError, RemoteProtocolError, WriteError
from .http2 import H2Exchange, SharedConnection, StreamResetError, _expire, _wake
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
#: Bytes of a partial HTTP/3 frame (a HEADERS frame arriving in pieces) that do not
#: count against the stream window: a header block larger than a small window must
#: still be able to arrive; past this allowance it waits for the reader like data.
_FRAME_ALLOWANCE: Final = 64 * 1024
#: Send errors that say the local path broke (the interface went down, the address
#: went away, a firewall refused): the connection moves to a new UDP socket.
_PATH_ERRNOS: Final = frozenset(
    (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EADDRNOTAVAIL, errno.EPERM)
)


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


class _QuicConnection(QuicConnection):
    """aioquic's QUIC connection, crediting receive windows as the reader consumes.

    aioquic raises MAX_STREAM_DATA and MAX_DATA (doubling them) once half of a window
    has *arrived*, whether or not anyone read it, so a slow reader of a streamed
    response would buffer without bound. Here the limits follow what was consumed, as
    HTTP/2's WINDOW_UPDATEs do: a stream may run ``max_stream_data`` ahead of what
    QUIC delivered in order minus what its exchange still ``held`` unread (and what
    HTTP/3 buffers of a partial frame past ``_FRAME_ALLOWANCE``); the connection
    ``max_data`` ahead of all data received minus all held. Credit goes out once it
    opens at least half a window. The two ``_write_*_limits`` hooks are where aioquic
    decides this when it builds a packet; nothing else of aioquic's flow control changes.
    """

    def __init__(self, *, configuration: QuicConfiguration, **kwargs: Any) -> None:
        super().__init__(configuration=configuration, **kwargs)
        self.stream_window = configuration.max_stream_data
        self.connection_window = configuration.max_data
        #: Bytes handed to an exchange and not read yet, per stream and in total.
        self.held: dict[int, int] = {}
        self.held_total = 0
        #: The HTTP/3 layer's streams (a partial frame past the allowance counts as held).
        self.h3_streams: dict[int, Any] = {}
        #: The server's disable_active_migration transport parameter (aioquic does
        #: not keep it): then the client must not move to another local address.
        self.migration_disabled = False

    def _parse_transport_parameters(self, data: bytes, from_session_ticket: bool = False) -> None:
        if not from_session_ticket:
            try:
                params = pull_quic_transport_parameters(Buffer(data=data))
            except ValueError:
                pass  # aioquic's own parse below reports it
            else:
                self.migration_disabled = bool(params.disable_active_migration)
        super()._parse_transport_parameters(data, from_session_ticket)

    def stream_credit(self, stream: Any) -> int:
        """The MAX_STREAM_DATA ``stream`` has earned (delivered, minus held, plus a window)."""
        sid = stream.stream_id
        h3 = self.h3_streams.get(sid)
        pending = self.held.get(sid, 0)
        if h3 is not None and len(h3.buffer) > _FRAME_ALLOWANCE:
            pending += len(h3.buffer) - _FRAME_ALLOWANCE
        return int(stream.receiver.starting_offset()) - pending + self.stream_window

    def credit_due(self, stream_id: int) -> bool:
        """Whether a MAX_STREAM_DATA or MAX_DATA is now worth sending."""
        window = self.connection_window
        max_data = self._local_max_data
        if max_data.used - self.held_total + window - max_data.value >= window >> 1:
            return True
        stream = self._streams.get(stream_id)
        return stream is not None and (
            self.stream_credit(stream) - stream.max_stream_data_local >= self.stream_window >> 1
        )

    def _write_connection_limits(self, builder: Any, space: Any) -> None:
        max_data = self._local_max_data
        window = self.connection_window
        credit = max_data.used - self.held_total + window
        if credit - max_data.value >= window >> 1:
            max_data.value = credit
        used = max_data.used
        max_data.used = 0  # keeps aioquic from doubling MAX_DATA on arrival
        try:
            super()._write_connection_limits(builder, space)  # MAX_DATA, MAX_STREAMS
        finally:
            max_data.used = used

    def _write_stream_limits(self, builder: Any, space: Any, stream: Any) -> None:
        # Runs for every stream each time a packet is built: the common case (nothing
        # delivered that could earn half a window, nothing unsent) returns at once.
        limit = stream.max_stream_data_local
        if not limit or stream.receiver.is_finished:  # zero: our own unidirectional ones
            return
        window = self.stream_window
        if stream.receiver._buffer_start + window - limit >= window >> 1:  # delivered offset
            credit = self.stream_credit(stream)
            if credit - limit >= window >> 1:
                stream.max_stream_data_local = credit
        if stream.max_stream_data_local_sent != stream.max_stream_data_local:
            buf = builder.start_frame(
                QuicFrameType.MAX_STREAM_DATA,
                capacity=MAX_STREAM_DATA_FRAME_CAPACITY,
                handler=self._on_max_stream_data_delivery,
                handler_args=(stream,),
            )
            buf.push_uint_var(stream.stream_id)
            buf.push_uint_var(stream.max_stream_data_local)
            stream.max_stream_data_local_sent = stream.max_stream_data_local


class _H3Connection(H3Connection):
    """aioquic's HTTP/3 layer with the QPACK table size and blocked-stream limit we
    offer the server (it has them fixed at 4096 and 16 otherwise), and the server's
    GOAWAY surfaced: aioquic reads past a GOAWAY's payload, so the server's control
    stream is followed here too, frame by frame (:meth:`_tap`), and each GOAWAY's
    stream id goes to ``on_goaway``."""

    def __init__(self, quic: QuicConnection, table_capacity: int, blocked_streams: int) -> None:
        self._offer = (table_capacity, blocked_streams)
        super().__init__(quic)
        self.on_goaway: Callable[[int], None] | None = None
        #: The server's control stream once its type is read; None before.
        self._tap_control: int | None = None
        #: Unparsed bytes per server unidirectional stream (only the control one after
        #: its type), and payload bytes still to skip of the frame being passed over.
        self._tap_pending: dict[int, bytes] = {}
        self._tap_skip = 0
        self._last_goaway: int | None = None

    def handle_event(self, event: QuicEvent) -> list[H3Event]:
        if type(event) is StreamDataReceived and event.stream_id & 3 == 3 and not self._is_done:
            try:
                self._tap(event.stream_id, event.data)
            except ProtocolError as exc:  # as aioquic treats its own findings
                self._is_done = True
                self._quic.close(error_code=exc.error_code, reason_phrase=exc.reason_phrase)
                return []
        return super().handle_event(event)

    def _tap(self, stream_id: int, data: bytes) -> None:
        control = self._tap_control
        if control is not None and stream_id != control:
            return
        pending = self._tap_pending
        if stream_id not in pending and control is None and stream_id in self._stream:
            return  # a server stream whose type was read already: not the control one
        buf = Buffer(data=pending.pop(stream_id, b"") + data)
        if control is None:
            try:
                kind = buf.pull_uint_var()
            except BufferReadError:
                pending[stream_id] = buf.data_slice(0, buf.capacity)
                return
            if kind != StreamType.CONTROL:
                return
            self._tap_control = stream_id
        end = buf.capacity
        while True:
            if self._tap_skip:
                step = min(self._tap_skip, end - buf.tell())
                buf.seek(buf.tell() + step)
                self._tap_skip -= step
                if self._tap_skip:
                    return
            start = buf.tell()
            try:
                frame_type = buf.pull_uint_var()
                length = buf.pull_uint_var()
            except BufferReadError:
                pending[stream_id] = buf.data_slice(start, end)
                return
            if frame_type != FrameType.GOAWAY:
                self._tap_skip = length
                continue
            if length > 8:
                raise FrameError("GOAWAY frame payload is longer than a stream id")
            if end - buf.tell() < length:
                pending[stream_id] = buf.data_slice(start, end)
                return
            payload = Buffer(data=buf.pull_bytes(length))
            try:
                goaway_id = payload.pull_uint_var()
            except BufferReadError:
                raise FrameError("GOAWAY frame payload is truncated") from None
            if not payload.eof():
                raise FrameError("GOAWAY frame payload has bytes after the stream id")
            self._goaway(goaway_id)

    def _goaway(self, goaway_id: int) -> None:
        # RFC 9114 §5.2: a server's GOAWAY names a client-initiated bidirectional
        # stream, and a later GOAWAY may only lower it.
        if goaway_id & 3:
            raise IdError(f"GOAWAY names stream {goaway_id}, not a request stream")
        if self._last_goaway is not None and goaway_id > self._last_goaway:
            raise IdError(f"GOAWAY raised the stream id from {self._last_goaway} to {goaway_id}")
        self._last_goaway = goaway_id
        if self.on_goaway is not None:
            self.on_goaway(goaway_id)

    def _init_connection(self) -> None:
        # Runs at the end of H3Connection.__init__, before SETTINGS are sent.
        import pylsqpack

        self._max_table_capacity, self._blocked_streams = self._offer
        self._decoder = pylsqpack.Decoder(*self._offer)
        super()._init_connection()


class _H3Exchange(H2Exchange):
    """HTTP/2's exchange, flushing after a read only when it earned the server credit
    (a flush builds packets: too costly to do for every ~1 KB QUIC chunk read)."""

    __slots__ = ()

    def _take(self) -> bytes:
        data, flow = self.chunks.popleft()
        if flow:
            conn = cast("HTTP3Connection", self._conn)
            if conn.proto.acknowledge(self.stream_id, flow):
                conn.flush()
        return data


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

    def acknowledge(self, stream_id: int, flow: int) -> bool:
        """``flow`` bytes of the stream were read: no longer held against its windows.
        ``True`` when that makes a MAX_STREAM_DATA or MAX_DATA due."""
        quic = self._conn.quic
        held = quic.held
        left = held.get(stream_id, 0) - flow
        if left > 0:
            held[stream_id] = left
        else:
            held.pop(stream_id, None)
        quic.held_total -= flow
        return quic.credit_due(stream_id)

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
        self.quic = _QuicConnection(configuration=quic_config, session_ticket_handler=on_ticket)
        self.h3 = _H3Connection(
            self.quic, config.qpack_max_table_capacity, config.qpack_blocked_streams
        )
        self.quic.h3_streams = self.h3._stream
        self.h3.on_goaway = self._goaway
        #: The stream id of the server's last GOAWAY: no new requests; this stream and
        #: later ones were not processed.
        self.goaway_id: int | None = None
        #: Times this connection moved to a new local UDP socket (:meth:`migrate`).
        self.migrations = 0
        #: A send error that broke the local path, waiting for :meth:`migrate` (set
        #: until the move is done; a second one before the server answered fails).
        self._broken_path: OSError | None = None
        self._heard_since_move = True
        self._ping_id = 0
        self._mover: Any = None
        #: Woken when the server's SETTINGS arrive (extended CONNECTs wait for them).
        self._settings_waiters: list[asyncio.Future[None]] = []
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
        return self.error is None and self.goaway_id is None and not self._closing()

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

    async def migrate(self, local_address: str | None = None) -> bool:
        """Move this connection to a new local UDP socket (a new port; ``local_address``
        picks the interface), keeping the QUIC connection and its streams in flight.

        For a network change: the client switches to a fresh connection ID from the
        server's (so the old and the new path cannot be linked, RFC 9000 §9.5) and
        sends a PING on the new path, which the server validates and adopts. Returns
        ``False`` and changes nothing before the handshake completed, once the
        connection is closing, or when the server disabled active migration.
        """
        quic = self.quic
        if (
            not self.handshake_done
            or self.error is not None
            or self._closing()
            or quic.migration_disabled
        ):
            return False
        ip, port = self.udp.peer_address
        try:
            udp = await self.runtime.open_udp(ip, port, local_address=local_address)
        except OSError as exc:
            raise ConnectError(
                f"cannot open a new UDP socket to move the HTTP/3 connection to: {exc}"
            ) from None
        if self.error is not None or self._closing():
            udp.close()
            return False
        old, self.udp = self.udp, udp
        self.migrations += 1
        self._broken_path = None
        self._heard_since_move = False
        quic.change_connection_id()  # keeps the old one when the server gave no other
        self._ping_id += 1
        quic.send_ping(self._ping_id)  # a non-probing packet: the server moves over
        old.wake()  # the reader waits on the old socket: it picks up the new one
        old.close()
        self.flush()
        return True

    def _path_broke(self, exc: OSError) -> bool:
        """A send error: move to a new socket (in the background, or before the next
        inline read) if it says the local path broke; ``False`` to fail instead."""
        if (
            exc.errno not in _PATH_ERRNOS
            or not self.handshake_done
            or self.quic.migration_disabled
            or not self._heard_since_move  # the last move did not help
        ):
            return False
        if self._broken_path is None:
            self._broken_path = exc
            if self.loop is not None:
                self._mover = self.runtime.spawn(self._move_after(exc))
        return True

    async def _move_after(self, exc: OSError) -> None:
        try:
            moved = await self.migrate()
        except AioductError:
            moved = False
        if not moved:
            self._fail(WriteError(f"HTTP/3 connection failed while sending: {exc}"))

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
        for waiter in self._settings_waiters:
            _wake(waiter)  # the waiting request finds the error
        for exchange in list(self.exchanges.values()):
            exchange._fail(error)
        self.udp.close()
        if self.on_change is not None:
            self.on_change(self)

    def _release(self, exchange: H2Exchange) -> None:
        self.exchanges.pop(exchange.stream_id, None)
        self._interim.pop(exchange.stream_id, None)
        held = self.quic.held.pop(exchange.stream_id, 0)
        if held:
            self.quic.held_total -= held  # unread, and nobody will read it now
        self.in_use -= 1
        if self.goaway_id is not None and not self.exchanges and self.error is None:
            self.close()  # drained after GOAWAY
        else:
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
            if not self._path_broke(exc):
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
            try:
                settings = await self._peer_settings(deadlines)
            except BaseException:
                self._give_back()
                raise
            if not settings.get(Setting.ENABLE_CONNECT_PROTOCOL):
                self._give_back()
                raise RemoteProtocolError(
                    f"{self.key.host}:{self.key.port} does not take extended CONNECT over "
                    "HTTP/3 (no SETTINGS_ENABLE_CONNECT_PROTOCOL, RFC 9220)"
                )
        if not self.handshake_done and request.method not in _SAFE_METHODS:
            try:
                await self.wait_handshake(deadlines.for_connect())
            except BaseException:
                self._give_back()
                raise
        if self.error is not None or self.goaway_id is not None or self._closing():
            self._give_back()
            raise StreamNotProcessed("the HTTP/3 connection stopped taking new requests")
        url = request.url
        content = request.content
        body_stream = request.stream
        has_body = bool(content) or body_stream is not None
        fields = [(b":method", request.method.encode())]
        if protocol is not None:  # extended CONNECT (RFC 9220): a tunnel, not a request
            fields.append((b":protocol", protocol.encode()))
        fields += [
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
            self.h3.send_headers(stream_id, fields, end_stream=not has_body and protocol is None)
        except BaseException:
            self._give_back()
            raise
        exchange = _H3Exchange.opened(self, stream_id, deadlines, collect)
        if has_body:
            self.flush()
        else:
            self.flush_soon()
        head, sent_at = await exchange.transmit(content, body_stream)
        return exchange, head, sent_at

    async def _peer_settings(self, deadlines: Deadlines) -> dict[int, int]:
        """The server's SETTINGS, which follow its handshake (extended CONNECT may be
        sent only once they allow it: RFC 9220 §3)."""
        deadline = deadlines.for_connect()
        try:
            await self.wait_handshake(deadline)
            while (settings := self.h3.received_settings) is None:
                if self.error is not None:
                    raise self.error
                if self.loop is None:
                    await self.read_inline(deadline)
                    continue
                waiter = self.loop.create_future()
                self._settings_waiters.append(waiter)
                handle = self.loop.call_at(deadline, _expire, waiter) if deadline else None
                try:
                    await waiter
                finally:
                    self._settings_waiters.remove(waiter)
                    if handle is not None:
                        handle.cancel()
        except Expired:
            raise deadlines.error("connect", "waiting for the server's HTTP/3 SETTINGS") from None
        return settings

    def _give_back(self) -> None:
        self.in_use -= 1
        if self.on_change is not None:
            self.on_change(self)

    # -- input -----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            while True:
                udp = self.udp  # migrate() may have replaced it
                timer = self.quic.get_timer()
                self._reader_deadline = timer
                try:
                    datagrams = await udp.recv(timer)
                except Expired:
                    self.quic.handle_timer(now=self.runtime.now())
                    self._process()
                    continue
                except OSError as exc:
                    # From a socket already replaced, or one that lost its path (the
                    # move to a new socket is under way): read on.
                    if udp is not self.udp or self._path_broke(exc):
                        continue
                    raise
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
        broken = self._broken_path
        if broken is not None:
            try:
                moved = await self.migrate()
            except AioductError:
                moved = False
            if not moved:
                self._fail(WriteError(f"HTTP/3 connection failed while sending: {broken}"))
                return
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
            if not self._path_broke(exc):  # else the next call moves to a new socket
                self._fail(ReadError(f"HTTP/3 connection failed while reading: {exc}"))
            return
        self._received(datagrams)

    def _received(self, datagrams: list[bytes]) -> None:
        quic = self.quic
        now = self.runtime.now()
        addr = self.udp.peer_address
        for data in datagrams:
            quic.receive_datagram(data, addr, now)
        if datagrams:
            self._heard_since_move = True
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
        if self._settings_waiters and h3.received_settings is not None:
            for waiter in self._settings_waiters:
                _wake(waiter)
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
        # Whether the server processed the requests still in flight is unknown (a
        # GOAWAY already failed those it did not), so they fail rather than go again.
        self._fail(error)

    def _goaway(self, goaway_id: int) -> None:
        """The server's GOAWAY (RFC 9114 §5.2): no new requests here; requests on
        ``goaway_id`` and later streams were not processed, and are retried on another
        connection (:class:`StreamNotProcessed`); earlier ones finish."""
        self.goaway_id = goaway_id
        for stream_id, exchange in list(self.exchanges.items()):
            if stream_id >= goaway_id:
                exchange._fail(
                    StreamNotProcessed(
                        f"the server sent HTTP/3 GOAWAY (stream {goaway_id}) before "
                        "processing this request"
                    )
                )
        if not self.exchanges:
            self.close()
        if self.on_change is not None:
            self.on_change(self)

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
            data = event.data
            if data:
                if exchange.collecting:  # read_body() gathers it all: consumed on arrival
                    exchange.chunks.append((data, 0))
                    exchange.buffered += len(data)
                else:  # held against the windows until the reader takes it
                    size = len(data)
                    exchange.chunks.append((data, size))
                    quic = self.quic
                    quic.held[event.stream_id] = quic.held.get(event.stream_id, 0) + size
                    quic.held_total += size
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
            return None
        return ResponseReceived(exchange.stream_id, status, fields, bool(event.stream_ended))

    def _stream_error(self, exchange: H2Exchange, what: str) -> None:
        exchange._fail(
            RemoteProtocolError(f"the server sent {what} on HTTP/3 stream {exchange.stream_id}")
        )
        self.proto.reset(exchange.stream_id, 0)
