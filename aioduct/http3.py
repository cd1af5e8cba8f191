"""HTTP3Connection: HTTP/3 over QUIC, shared by concurrent requests like HTTP/2.

QUIC is a sans-I/O state machine in aioquic or qh3 (:mod:`aioduct.quic` adapts both;
``QuicConnection`` takes datagrams and the time, gives datagrams and a timer;
``H3Connection`` turns stream data into HTTP/3 events), so this module only moves
datagrams through the runtime's :class:`~aioduct.runtimes.Datagrams` and dispatches
events to per-request exchanges -- the same :class:`~aioduct.http2.H2Exchange` objects
HTTP/2 uses, driven through a small
adapter (:class:`_QuicStreams`) that gives them the operations they call on HTTP/2's
protocol object. The engine, the pool and the streaming body therefore treat an HTTP/3
connection exactly as a multiplexed HTTP/2 one.

One reader task per connection (on runtimes with background tasks) waits for datagrams
until QUIC's next timer, feeds them in, and handles the timer when it fires: that is
where loss recovery, ACKs and the idle timeout happen. On the blocking runtime the
request waiting for its stream does the same inline (:meth:`read_inline`).

Flow control follows the consumer as on HTTP/2 on aioquic (``AioquicQuic`` in
:mod:`aioduct.quic`): the server may run one window ahead of what the reader took, not
of what arrived. A connection can move to a new local UDP socket
(:meth:`HTTP3Connection.migrate`), on request or when a send error says the local path
broke.

Failure boundaries follow HTTP/2's: a stream reset fails that request; a GOAWAY stops
new requests and fails the streams it names as not processed; a connection close (idle
timeout, the server's CONNECTION_CLOSE, a stateless reset, a protocol error) fails
every stream in flight with the error code's name in the message; a request the server
never saw (the connection was already closing, or GOAWAY named it) is retried on a new
connection by the engine. Datagrams that do not decrypt are dropped by QUIC, so a peer
sending garbage cannot wedge the client: at worst the idle timeout ends it.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from functools import partial
from time import perf_counter
from typing import Any, Final, Literal, cast

from .config import Http3Config
from .connection import StreamNotProcessed
from .errors import AioductError, ConnectError, ReadError, RemoteProtocolError, WriteError
from .http2 import H2Exchange, SharedConnection, StreamResetError, _expire, _wake
from .models import Request
from .pool import PoolKey
from .protocol.http2 import ResponseReceived
from .quic import ErrorCode, QuicErrorCode, check_goaway, load_backend
from .runtimes import Datagrams, Expired, Runtime
from .timeouts import Deadlines

#: A QUIC session ticket: the backend library's own type (kept, never looked into).
SessionTicket = Any

__all__ = ["HTTP3Connection", "quic_configuration", "unread_limit"]

#: H3_REQUEST_CANCELLED (RFC 9114 §8.1): how we abandon a stream we no longer read.
_CANCELLED: Final = ErrorCode.H3_REQUEST_CANCELLED
#: 1xx heads accepted on one stream before the response is refused (as for HTTP/2).
_MAX_INTERIM: Final = 100
_SAFE_METHODS: Final = frozenset(("GET", "HEAD", "OPTIONS", "TRACE"))
#: QuicConnectionState.CLOSING's value: this state and the later ones take no streams.
_CLOSING_STATE: Final = 2
#: Send errors that say the local path broke (the interface went down, the address
#: went away, a firewall refused): the connection moves to a new UDP socket.
_PATH_ERRNOS: Final = frozenset(
    (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EADDRNOTAVAIL, errno.EPERM)
)
#: SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3, for HTTP/3 RFC 9220 §3).
_ENABLE_CONNECT_PROTOCOL: Final = 0x8


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
) -> Any:
    """The QUIC library's client configuration for one origin (``config.backend``'s).

    QUIC runs its own TLS 1.3 (not the ``ssl`` module), so trust comes as files:
    ``cafile`` is the CA bundle the TCP connections use (certifi's, or ``verify=``'s).
    """
    return load_backend(config.backend).configuration(
        server_name,
        alpn=["h3"],
        verify=bool(verify),
        cafile=cafile,
        max_data=config.max_data,
        max_stream_data=config.max_stream_data,
        idle_timeout=config.idle_timeout,
        max_datagram_size=config.max_datagram_size,
        congestion_control=config.congestion_control,
        session_ticket=session_ticket,
    )


def unread_limit(config: Http3Config) -> int:
    """Bytes one streamed HTTP/3 response may hold received but unread on a QUIC library
    that credits the server as data arrives (qh3): two stream windows, one the server
    may have in flight when the reader stops plus one of slack. Past it the stream
    fails (``2 * max_data`` bounds the whole connection the same way)."""
    return 2 * config.max_stream_data


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
        return bool(quic.credit_due(stream_id))

    def send_body(self, stream_id: int, data: memoryview, end: bool) -> int:
        conn = self._conn
        if conn.h3.send_buffered(stream_id) > conn.send_buffer_limit:
            return 0  # wait until the peer acknowledges some (the reader wakes us)
        conn.h3.send_data(stream_id, bytes(data), end_stream=end)
        return len(data)

    def end_stream(self, stream_id: int) -> None:
        self._conn.h3.send_data(stream_id, b"", end_stream=True)

    def stream_is_open(self, stream_id: int) -> bool:
        return self._conn.h3.stream_is_open(stream_id)

    def reset(self, stream_id: int, _h2_code: int) -> None:
        if self._conn.error is None:
            self._conn.h3.abandon(stream_id, _CANCELLED)


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
        quic_config: Any,
        *,
        early_data: bool = False,
        on_ticket: Callable[[SessionTicket], None] | None = None,
    ) -> None:
        self.udp = udp
        self.key = key
        self.runtime = runtime
        self.config = config
        self.loop = asyncio.get_running_loop() if runtime.background else None
        #: The QUIC library (:mod:`aioduct.quic`): its connection and HTTP/3 layer.
        self.lib = lib = load_backend(config.backend)
        self.quic: Any = lib.connection(quic_config, on_ticket)
        self.h3 = lib.h3(self.quic, config.qpack_max_table_capacity, config.qpack_blocked_streams)
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
        self._out_of_streams = False
        #: Unread bytes a stream (and the whole connection) may hold when the QUIC
        #: library credits the server as data arrives (qh3): past them the stream fails
        #: (:meth:`_overflow`). With reader-driven credit (aioquic) the windows bound it.
        self.unread_limit = unread_limit(config)
        self.unread_total_limit = 2 * config.max_data
        self._bounds_unread = bool(getattr(self.quic, "credits_on_arrival", False))

    # -- lifecycle -------------------------------------------------------------------------

    def peer_certificate_der(self) -> bytes | None:
        """The server's certificate (DER) from this connection's handshake, for pinning;
        ``None`` when the handshake presented none (a resumed session)."""
        return self.h3.peer_certificate_der()

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
        # max_streams bounds streams open at once; the stream credit (MAX_STREAMS) is
        # cumulative, and a server that is slow to raise it holds new requests back.
        return self.is_alive() and self.in_use < self.max_streams and self.h3.can_open_stream()

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
            if not settings.get(_ENABLE_CONNECT_PROTOCOL):
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
        if not self.h3.can_open_stream():  # the credit ran out while this one waited
            self._out_of_streams = True
            self._give_back()
            raise StreamNotProcessed("the server allows no more streams on this connection yet")
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
        if not self.h3.can_open_stream():
            self._out_of_streams = True  # _process tells the pool when MAX_STREAMS comes
        if has_body:
            self.flush()
        else:
            self.flush_soon()
        wait = None
        if has_body and request.expect_continue:  # as on HTTP/2 (RFC 9110 §10.1.1)
            wait = partial(self._await_continue, exchange, deadlines)
        head, sent_at = await exchange.transmit(content, body_stream, wait)
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
        return dict(settings)

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
                    now = self.runtime.now()
                    moved = self.quic.get_timer()
                    if moved is not None and timer is not None and moved > max(timer, now):
                        continue  # a send while we waited did it (an ACK that was due)
                    self.quic.handle_timer(now=now)
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
            await self._move_after(broken)  # what a reader task does in the background
            if self.error is not None:
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
        self.h3.receive_datagrams(datagrams, self.udp.peer_address, self.runtime.now())
        if datagrams:
            self._heard_since_move = True
        self._process()

    def _process(self) -> None:
        """Dispatch QUIC and HTTP/3 events to the exchanges, then send what is due."""
        quic, h3, lib = self.quic, self.h3, self.lib
        while (event := quic.next_event()) is not None:
            kind = type(event)
            if kind is lib.HandshakeCompleted:
                self._handshake_completed(event)
            elif kind is lib.ConnectionTerminated:
                self._terminated(event)
                return
            elif kind is lib.StreamReset:
                exchange = self.exchanges.get(event.stream_id)
                if exchange is not None:
                    exchange._fail(self._reset_error(event.error_code))
            try:
                h3_events = h3.handle_event(event)
            except ValueError:
                # qh3 reads some control frames' fields without catching a short
                # payload (a GOAWAY whose stream id is cut off): a frame error.
                self._protocol_error(
                    ErrorCode.H3_FRAME_ERROR, "a frame's payload ended inside one of its fields"
                )
                return
            for h3_event in h3_events:
                self._h3_event(h3_event)
        if self.error is None:
            self.flush_soon()
            if self._out_of_streams and h3.can_open_stream():
                self._out_of_streams = False
                if self.on_change is not None:
                    self.on_change(self)  # the server raised MAX_STREAMS: capacity again
        if self._settings_waiters and h3.received_settings is not None:
            for waiter in self._settings_waiters:
                _wake(waiter)
        for exchange in self.exchanges.values():
            if exchange._send_waiter is not None:
                exchange._notify_send()  # acknowledged data may have freed send buffer

    def _handshake_completed(self, event: Any) -> None:
        self.handshake_done = True
        self.session_resumed = event.session_resumed
        self.early_data_accepted = event.early_data_accepted
        limit = self.h3.peer_max_streams()
        if limit:
            self.max_streams = limit
        waiter = self._handshake
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.on_change is not None:
            self.on_change(self)

    def _terminated(self, event: Any) -> None:
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

    def _goaway_event(self, goaway_id: int) -> None:
        """A GOAWAY the QUIC library reported as an event (qh3), checked as aioquic's."""
        try:
            check_goaway(self.h3, goaway_id)  # calls _goaway through h3.on_goaway
        except ValueError as exc:
            self._protocol_error(ErrorCode.H3_ID_ERROR, str(exc))

    def _protocol_error(self, code: int, what: str) -> None:
        """The server broke HTTP/3: close the connection with ``code``; streams fail."""
        self.quic.close(error_code=code, reason_phrase=what)
        self.flush()
        self._fail(
            RemoteProtocolError(f"the HTTP/3 connection failed: {error_name(code)}, {what!r}")
        )

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
        kind = type(event)
        if kind is self.lib.GoawayReceived:  # qh3's (its stream id may be an exchange's)
            self._goaway_event(event.stream_id)
            return
        if exchange is None:
            return
        if kind is self.lib.InterimHeadersReceived:  # qh3's 1xx heads
            self._head(exchange, event)
        elif kind is self.lib.HeadersReceived:
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
        elif kind is self.lib.DataReceived:
            data = event.data
            if data:
                if exchange.collecting:  # read_body() gathers it all: consumed on arrival
                    exchange.chunks.append((data, 0))
                    exchange.buffered += len(data)
                elif exchange.error is None:  # held against the windows until read
                    size = len(data)
                    exchange.chunks.append((data, size))
                    quic = self.quic
                    sid = event.stream_id
                    held = quic.held[sid] = quic.held.get(sid, 0) + size
                    quic.held_total += size
                    if self._bounds_unread and (
                        held > self.unread_limit or quic.held_total > self.unread_total_limit
                    ):
                        self._overflow(exchange if held > self.unread_limit else None)
                        if exchange.error is not None:
                            return
                        # (another stream held the most and failed: this one goes on)
            if event.stream_ended:
                exchange.ended = True
            if not exchange.collecting or exchange.ended or exchange.buffered > exchange.limit:
                exchange._notify()

    def _overflow(self, exchange: H2Exchange | None) -> None:
        """A streamed response holds more unread data than :func:`unread_limit` allows
        (or the connection more than ``2 * max_data``: then the stream holding most
        fails). The QUIC library (qh3) credited the server as the data arrived, so
        nothing held it back: fail the stream, drop what it held, and stop the server
        sending it (STOP_SENDING, RESET_STREAM). The connection and its other streams
        carry on."""
        quic = self.quic
        if exchange is None:
            sid = max(quic.held, key=quic.held.__getitem__)
            exchange = self.exchanges[sid]
            what = (
                f"the HTTP/3 connection holds {quic.held_total} bytes received but not "
                f"read, more than 2 * Http3Config.max_data ({self.unread_total_limit}); "
                f"stream {sid} holds the most"
            )
        else:
            sid = exchange.stream_id
            what = (
                f"HTTP/3 stream {sid} holds {quic.held[sid]} bytes received but not "
                f"read, more than 2 * Http3Config.max_stream_data ({self.unread_limit})"
            )
        exchange.chunks.clear()
        quic.held_total -= quic.held.pop(sid, 0)
        error = ReadError(
            f"{what}: the {self.lib.name} QUIC backend credits the server as data "
            "arrives, so a reader that falls this far behind is cut off. Read the "
            "body faster, raise Http3Config.max_stream_data / max_data, or use "
            "Http3Config(backend='aioquic'), which credits the server only as the "
            "reader consumes (a paused reader then just pauses the server)"
        )
        if exchange.error is None:
            # Even on a stream that has ended (which _fail leaves alone): its data is
            # gone, and its reader must not take what it read for the whole body.
            exchange.error = error
        exchange._fail(error)
        self.h3.abandon(sid, _CANCELLED)

    def _head(self, exchange: H2Exchange, event: Any) -> ResponseReceived | None:
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
        ended = bool(getattr(event, "stream_ended", False))
        return ResponseReceived(exchange.stream_id, status, fields, ended)

    def _stream_error(self, exchange: H2Exchange, what: str) -> None:
        exchange._fail(
            RemoteProtocolError(f"the server sent {what} on HTTP/3 stream {exchange.stream_id}")
        )
        self.proto.reset(exchange.stream_id, 0)
