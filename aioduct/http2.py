"""HTTP2Connection: many concurrent requests over one runtime stream.

The sans-I/O :class:`~aioduct.protocol.http2.H2Protocol` holds the protocol state; this
module moves its bytes over a :class:`~aioduct.runtimes.Stream` and turns its events into
per-request state. One reader task per connection reads the socket and dispatches events
to :class:`H2Exchange` objects (one per stream); the request tasks only wait on their
own exchange. Writes happen on whichever task produced them (a request's HEADERS, a
reader's WINDOW_UPDATE), straight to the stream: ``Stream.write`` never blocks.

Flow control follows the consumer: DATA is credited back to the server when the caller
takes it from the exchange (``read_chunk``), not when it arrives, so a slow reader of a
streamed response throttles the server instead of filling memory. Uploads go out only
as far as the server's windows allow and then wait for WINDOW_UPDATE.

Failure boundaries: a RST_STREAM, a timeout or a cancelled request ends *its* stream
(RST_STREAM CANCEL for ours) and leaves the siblings alone; a GOAWAY fails only the
streams the server says it did not process -- with :class:`StreamNotProcessed`, which the
engine retries on another connection -- and lets the rest finish; a broken socket, a
protocol violation or an unanswered keep-alive PING fails every stream of the connection.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable
from functools import partial
from time import perf_counter
from typing import Any, Final, Literal

from .config import Http2Config
from .connection import NoStreamCapacity, StreamNotProcessed
from .errors import (
    AioductError,
    BodyTooLarge,
    ReadError,
    RemoteProtocolError,
    WriteError,
)
from .models import Request
from .pool import PoolKey
from .protocol.http2 import (
    CANCEL,
    KEEPALIVE_PING,
    REFUSED_STREAM,
    ConnectionTerminated,
    DataReceived,
    H2Protocol,
    InformationalResponse,
    PingAcked,
    ResponseReceived,
    SettingsChanged,
    StreamEnded,
    StreamReset,
    TooManyStreamsError,
    TrailersReceived,
    WindowUpdated,
    error_name,
)
from .runtimes import Expired, Runtime, Stream
from .timeouts import Deadlines

__all__ = ["H2Exchange", "HTTP2Connection", "StreamNotProcessed", "StreamResetError"]

_REFUSED: Final = REFUSED_STREAM
_CANCEL: Final = CANCEL
_NO_LIMIT: Final = 1 << 62


class StreamResetError(RemoteProtocolError):
    """The server reset this request's stream (RST_STREAM); other requests are unaffected."""

    def __init__(self, message: str, *, error_code: int = 0, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.error_code = error_code


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(Expired())


class H2Exchange:
    """One request/response on a stream; also the response's :class:`BodyReader`."""

    __slots__ = (
        "_conn",
        "_send_waiter",
        "_waiter",
        "buffered",
        "chunks",
        "collecting",
        "continued",
        "deadlines",
        "ended",
        "error",
        "head",
        "head_at",
        "limit",
        "released",
        "stream_id",
        "trailers",
        "tunnel",
    )

    def __init__(self, conn: HTTP2Connection, stream_id: int, deadlines: Deadlines) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self.deadlines = deadlines
        self.head: ResponseReceived | None = None
        #: perf_counter() when the head arrived (the request may be woken later).
        self.head_at = 0.0
        self.chunks: deque[tuple[bytes, int]] = deque()
        self.ended = False
        self.error: AioductError | None = None
        self.trailers: list[tuple[str, str]] | None = None
        self.released = False
        self._waiter: asyncio.Future[None] | None = None
        self._send_waiter: asyncio.Future[None] | None = None
        #: Set while read_body() gathers the whole body: the reader task then credits
        #: DATA as it arrives (buffering it *is* consuming it) and wakes the request
        #: only at the end -- not once per DATA frame.
        self.collecting = False
        self.buffered = 0
        self.limit = _NO_LIMIT
        #: The server answered ``100 Continue`` (to ``Expect: 100-continue``).
        self.continued = False
        #: An extended-CONNECT tunnel: each side ends on its own (no reset at the
        #: server's end of stream while we may still send).
        self.tunnel = False

    @classmethod
    def opened(
        cls, conn: Any, stream_id: int, deadlines: Deadlines, collect: int | None
    ) -> H2Exchange:
        """The exchange of a stream just opened on ``conn`` (HTTP/2, or HTTP/3 through
        its adapter), registered there; ``collect`` as for ``send``."""
        exchange = cls(conn, stream_id, deadlines)
        if collect is not None:
            exchange.collecting = True
            if collect >= 0:
                exchange.limit = collect
        conn.exchanges[stream_id] = exchange
        return exchange

    async def transmit(
        self,
        content: bytes | None,
        body: AsyncIterable[bytes] | None,
        wait: Callable[[], Awaitable[None]] | None = None,
    ) -> tuple[ResponseReceived, float]:
        """Send the request body (after ``wait``: for 100 Continue), then await the head.

        On any failure the stream is reset and its slot given back; the connection is
        left to its other streams.
        """
        try:
            if wait is not None:
                await wait()
            if wait is not None and self.head is not None and not self.continued:
                pass  # a final answer to Expect: 100-continue: the body is not sent
            elif content:
                await self.send_body(content, True)
            elif body is not None:
                async for chunk in body:
                    if chunk:
                        await self.send_body(chunk, False)
                self.end_request()
            sent_at = perf_counter()
            head = await self.receive_head()
        except BaseException:
            self.abort()
            raise
        return head, sent_at

    # -- called by the reader task ---------------------------------------------------------

    def _notify(self) -> None:
        _wake(self._waiter)
        if self.ended:
            _wake(self._send_waiter)

    def _notify_send(self) -> None:
        _wake(self._send_waiter)

    def _fail(self, error: AioductError) -> None:
        if self.error is None and not (self.ended and self.head is not None):
            self.error = error
        _wake(self._waiter)
        _wake(self._send_waiter)

    # -- waiting ---------------------------------------------------------------------------

    async def _wait(self, deadline: float | None, send: bool = False) -> None:
        conn = self._conn
        if conn.loop is None:  # no reader task: read and dispatch ourselves
            await conn.read_inline(deadline)
            return
        loop = conn.loop
        waiter = loop.create_future()
        if send:
            self._send_waiter = waiter
        else:
            self._waiter = waiter
        handle = loop.call_at(deadline, _expire, waiter) if deadline is not None else None
        try:
            await waiter
        finally:
            if send:
                self._send_waiter = None
            else:
                self._waiter = None
            if handle is not None:
                handle.cancel()

    async def receive_head(self) -> ResponseReceived:
        """The final response head (1xx responses are skipped by the reader).

        When the whole body is wanted (``collecting``), the reader wakes us once the
        body is complete rather than once for the head and again for the body.
        """
        while self.head is None or (self.collecting and self._still_collecting()):
            if self.error is not None:
                raise self.error
            try:
                await self._wait(self.deadlines.for_read())
            except Expired:
                what = "reading the body" if self.head is not None else "waiting for the response"
                raise self.deadlines.error("read", what) from None
        return self.head

    def _still_collecting(self) -> bool:
        return not self.ended and self.error is None and self.buffered <= self.limit

    async def send_body(self, data: bytes | memoryview, end: bool) -> None:
        """Send request-body bytes as the server's windows open (never buffering them all)."""
        conn = self._conn
        proto = conn.proto
        view = memoryview(data)
        limit = conn.config.max_send_buf_size
        while True:
            if self.ended and self.head is not None and not self.tunnel:
                # A complete response before the whole request (RFC 9113 §8.1): the
                # server does not want the rest; stop sending (release() resets).
                return
            if self.error is not None:
                raise self.error
            if conn.error is not None:
                raise conn.error
            piece = view[:limit]
            last = end and len(piece) == len(view)
            sent = proto.send_body(self.stream_id, piece, last)
            conn.flush()
            view = view[sent:]
            stream = conn.stream
            if stream.writing_paused:
                try:
                    await stream.drain(self.deadlines.for_write())
                except Expired:
                    raise self.deadlines.error("write", "sending the request body") from None
                except OSError as exc:
                    raise WriteError(f"HTTP/2 connection failed while sending: {exc}") from None
            if not view and (sent or not piece or last):
                return
            if not proto.stream_is_open(self.stream_id):
                if self.ended and self.head is not None:
                    return
                raise self.error or StreamResetError(
                    "the HTTP/2 stream was closed while the request body was being sent"
                )
            if sent < len(piece):
                try:
                    await self._wait(self.deadlines.for_write(), send=True)
                except Expired:
                    raise self.deadlines.error(
                        "write", "waiting for the server's HTTP/2 flow-control window"
                    ) from None

    def end_request(self) -> None:
        self._conn.proto.end_stream(self.stream_id)
        self._conn.flush()

    # -- the response body -----------------------------------------------------------------

    def _take(self) -> bytes:
        data, flow = self.chunks.popleft()
        if flow:
            # Credit consumed bytes back; h2 batches these into few WINDOW_UPDATEs.
            conn = self._conn
            conn.proto.acknowledge(self.stream_id, flow)
            conn.flush()
        return data

    async def read_chunk(self) -> bytes | None:
        """The next piece of the body, or ``None`` once it is complete."""
        while not self.chunks:
            if self.error is not None:
                self.release()
                raise self.error
            if self.ended:
                if not self.tunnel:
                    self.release()
                return None
            if self.released:
                return None
            try:
                await self._wait(self.deadlines.for_read())
            except Expired:
                self.abort()
                raise self.deadlines.error("read", "reading the body") from None
            except BaseException:
                self.abort()
                raise
        return self._take()

    async def read_body(self, max_size: int | None) -> bytes:
        """The whole body (no await when it is already here, as for small responses).

        While it waits, the reader task buffers and credits the DATA itself and wakes
        this task only at the end of the stream, on an error, or past ``max_size``.
        """
        parts: list[bytes] = []
        size = 0
        chunks = self.chunks
        conn = self._conn
        if not self.collecting:
            self.collecting = True
            self.buffered = 0
        if max_size is not None:
            self.limit = max_size  # woken early to raise BodyTooLarge
        try:
            while True:
                if chunks:
                    flow = 0
                    while chunks:
                        data, length = chunks.popleft()
                        parts.append(data)
                        size += len(data)
                        flow += length
                    if flow:
                        conn.proto.acknowledge(self.stream_id, flow)
                        conn.flush()
                    if max_size is not None and size > max_size:
                        raise BodyTooLarge(f"response body exceeds max_body_size={max_size} bytes")
                    continue
                if self.error is not None:
                    raise self.error
                if self.ended:
                    break
                self.buffered = size
                try:
                    await self._wait(self.deadlines.for_read())
                except Expired:
                    raise self.deadlines.error("read", "reading the body") from None
        except BaseException:
            self.abort()
            raise
        self.release()
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    async def aclose(self) -> None:
        """Stop reading: an unfinished stream is reset; the connection carries on."""
        self.abort()

    # -- ending ----------------------------------------------------------------------------

    def abort(self) -> None:
        """End this stream now (RST_STREAM CANCEL if still open) and free its slot."""
        if self.released:
            return
        conn = self._conn
        if conn.error is None:
            while self.chunks:  # unread data still holds the connection's window
                _, flow = self.chunks.popleft()
                conn.proto.acknowledge(self.stream_id, flow)
            conn.proto.reset(self.stream_id, _CANCEL)  # a no-op once both sides ended
            conn.flush()
        self.release()

    def release(self) -> None:
        """Give the stream slot back to the connection (idempotent)."""
        if not self.released:
            self.released = True
            conn = self._conn
            if conn.error is None and conn.proto.stream_is_open(self.stream_id):
                # The response ended before our side did (early response, tunnel).
                conn.proto.reset(self.stream_id, _CANCEL)
                conn.flush()
            conn._release(self)


class _Settled:
    """The server's first SETTINGS, awaited without a loop (see ``HTTP2Connection.loop``)."""

    __slots__ = ("_error", "_set")

    def __init__(self) -> None:
        self._set = False
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._set

    def set_result(self, _value: None) -> None:
        self._set = True

    def set_exception(self, error: BaseException) -> None:
        self._set = True
        self._error = error

    def exception(self) -> BaseException | None:
        return self._error


class SharedConnection:
    """What the pool keeps on a connection that carries many requests at once (HTTP/2,
    HTTP/3): stream slots in use, coalesced aliases, the change callback, the exchanges
    in flight and the error that ended it (see :class:`~aioduct.pool.MultiplexedConnection`)."""

    def _init_shared(self) -> None:
        self.idle_since = 0.0
        self.holds_slot = False
        self.in_use = 0
        self.aliases: list[PoolKey] = []
        self.on_change: Callable[[Any], None] | None = None
        self.setup_timings: tuple[float | None, float | None, float | None, str | None] = (
            None,
            None,
            None,
            None,
        )
        self.exchanges: dict[int, H2Exchange] = {}
        #: Set once the connection is unusable; every stream then fails with it.
        self.error: AioductError | None = None
        self._flush_scheduled = False
        #: Seconds to wait for ``100 Continue`` before sending a body anyway (the
        #: engine sets the client's ``expect_continue_timeout``).
        self.expect_timeout = 1.0

    # Provided by each protocol's connection:
    loop: asyncio.AbstractEventLoop | None

    def flush(self) -> None:
        raise NotImplementedError

    def flush_soon(self) -> None:
        """Send what the protocol queued at the end of this loop iteration.

        Requests started in the same iteration (concurrent requests, or the next ones
        started by tasks the reader just woke) and the acknowledgements of what the
        reader just processed then go out in one write (HTTP/2) or one packet-building
        pass (HTTP/3, where building packets is the costly part).
        """
        if self.loop is None:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        if self.error is None:
            self.flush()

    async def _await_continue(self, exchange: H2Exchange, deadlines: Deadlines) -> None:
        """Wait for ``100 Continue``, a final response, or ``expect_timeout`` (then the
        body goes anyway), as on HTTP/1.1 (RFC 9110 §10.1.1)."""
        read_at = deadlines.read_at()
        wait_at = deadlines.now() + self.expect_timeout
        if read_at is not None and read_at < wait_at:
            wait_at = read_at
        while not exchange.continued and exchange.head is None:
            if exchange.error is not None:
                raise exchange.error
            try:
                await exchange._wait(wait_at)
            except Expired:
                if read_at is not None and wait_at >= read_at:
                    raise deadlines.error("read", "waiting for 100 Continue") from None
                return


class HTTP2Connection(SharedConnection):
    """An HTTP/2 connection shared by concurrent requests (see module docstring)."""

    multiplexed: Literal[True] = True
    http_version: Final = "HTTP/2"

    def __init__(
        self,
        stream: Stream,
        key: PoolKey,
        runtime: Runtime,
        config: Http2Config,
    ) -> None:
        self.stream = stream
        self.key = key
        self.runtime = runtime
        self.config = config
        #: ``None`` on a runtime without background tasks (the blocking client): there
        #: the request waiting for the connection reads it (:meth:`read_inline`).
        self.loop = asyncio.get_running_loop() if runtime.background else None
        self.proto = H2Protocol(
            stream_window=config.initial_stream_window_size,
            connection_window=config.initial_connection_window_size,
            max_frame_size=config.max_frame_size,
            max_header_list_size=config.max_header_list_size,
            max_closed_streams=config.max_concurrent_reset_streams,
            adaptive_window=config.adaptive_window,
            max_unproductive_frames=config.max_unproductive_frames,
        )
        self._init_shared()
        #: last-stream-id of a received GOAWAY: no new streams, higher ones were refused.
        self.goaway_last_id: int | None = None
        self.goaway_error: int = 0
        self._settings: asyncio.Future[None] | _Settled = (
            _Settled() if self.loop is None else self.loop.create_future()
        )
        self._reader: Any = None
        self._pinger: Any = None
        self._ping_waiter: asyncio.Future[None] | None = None
        self._last_received = runtime.now()
        #: The server's SETTINGS_MAX_CONCURRENT_STREAMS (cached: checked per checkout).
        self.max_streams = self.proto.max_concurrent_streams

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, deadline: float | None) -> None:
        """Send the connection preface and wait for the server's first SETTINGS.

        Waiting for SETTINGS (which the server sends at once) means the stream limit is
        known before any request is placed on the connection.
        """
        self.flush()
        if self.loop is None:
            try:
                while not self._settings.done():
                    await self.read_inline(deadline)
            except BaseException:
                self.close()
                raise
            if self.error is not None:
                raise self.error
            return
        self._reader = self.runtime.spawn(self._read_loop())
        waiter = self._settings
        assert isinstance(waiter, asyncio.Future)
        handle = self.loop.call_at(deadline, _expire, waiter) if deadline is not None else None
        try:
            await waiter
        except BaseException:
            self.close()
            raise
        finally:
            if handle is not None:
                handle.cancel()
        if self.config.keep_alive_interval is not None:
            self._pinger = self.runtime.spawn(self._keep_alive())

    def is_alive(self) -> bool:
        return self.error is None and self.goaway_last_id is None and not self.proto.terminated

    def has_capacity(self) -> bool:
        return (
            self.error is None
            and self.goaway_last_id is None
            and self.in_use < self.max_streams
            and not self.proto.terminated
        )

    def is_ready(self) -> bool:
        return self.has_capacity()

    def close(self) -> None:
        """Close now: GOAWAY (best effort), then the socket; live streams fail."""
        if self.error is None:
            self.proto.close()
            try:
                self.flush()
            except AioductError:
                pass
            self._fail(ReadError("the HTTP/2 connection was closed by the client"))
        self.stream.close()

    def _fail(self, error: AioductError) -> None:
        """The connection is unusable: fail every stream and tell the pool."""
        if self.error is not None:
            return
        self.error = error
        self.stream.close()
        for task in (self._reader, self._pinger):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if not self._settings.done():
            self._settings.set_exception(error)
            self._settings.exception()
        _wake(self._ping_waiter)
        for exchange in list(self.exchanges.values()):
            exchange._fail(error)
        if self.on_change is not None:
            self.on_change(self)

    def _release(self, exchange: H2Exchange) -> None:
        self.exchanges.pop(exchange.stream_id, None)
        self.in_use -= 1
        if self.goaway_last_id is not None and not self.exchanges and self.error is None:
            self.close()  # drained after GOAWAY
        if self.on_change is not None:
            self.on_change(self)

    # -- output ----------------------------------------------------------------------------

    def flush(self) -> None:
        data = self.proto.data_to_send()
        if data:
            try:
                self.stream.write(data)
            except OSError as exc:
                self._fail(WriteError(f"HTTP/2 connection failed while sending: {exc}"))

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

        ``collect`` (the body size limit, or -1 for none) says the caller will read the
        whole body: then this returns once the body is here too, saving a wake-up. On
        any failure the slot is given back and the stream reset; the connection is left
        to its other streams.
        """
        if self.error is not None or self.goaway_last_id is not None:
            self.in_use -= 1
            if self.on_change is not None:
                self.on_change(self)
            raise StreamNotProcessed("the HTTP/2 connection stopped taking new requests")
        url = request.url
        content = request.content
        body_stream = request.stream
        has_body = bool(content) or body_stream is not None
        headers = request.headers.raw()
        if content is not None and "content-length" not in request.headers:
            headers = [*headers, ("content-length", str(len(content)))]
        try:
            stream_id = self.proto.send_request(
                request.method,
                url.scheme,
                url.host_header,
                url.target,
                headers,
                end_stream=not has_body and protocol is None,
                protocol=protocol,
            )
        except TooManyStreamsError:
            self.in_use -= 1
            raise NoStreamCapacity() from None
        except BaseException:
            self.in_use -= 1
            if self.on_change is not None:
                self.on_change(self)
            raise
        exchange = H2Exchange.opened(self, stream_id, deadlines, collect)
        if has_body:
            self.flush()
        else:
            self.flush_soon()
        wait = None
        if has_body and protocol is None and request.expect_continue:
            wait = partial(self._await_continue, exchange, deadlines)
        head, sent_at = await exchange.transmit(content, body_stream, wait)
        return exchange, head, sent_at

    # -- the reader task -------------------------------------------------------------------

    async def _read_loop(self) -> None:
        stream = self.stream
        try:
            while True:
                self._received(await stream.read(None))
        except asyncio.CancelledError:
            self._fail(ReadError("the HTTP/2 connection was closed"))
            raise
        except AioductError as exc:
            self.flush()  # e.g. h2's GOAWAY after a protocol error, best effort
            self._fail(exc)
        except OSError as exc:
            self._fail(ReadError(f"HTTP/2 connection failed while reading: {exc}"))

    async def read_inline(self, deadline: float | None) -> None:
        """Without a reader task: read once (until ``deadline``: Expired) and dispatch.

        A failure fails the connection, as in the reader task; the waiting request
        then finds the error on its exchange.
        """
        try:
            self._received(await self.stream.read(deadline))
        except AioductError as exc:
            self.flush()
            self._fail(exc)
        except OSError as exc:
            self._fail(ReadError(f"HTTP/2 connection failed while reading: {exc}"))

    def _received(self, data: bytes) -> None:
        if not data:
            raise ReadError(self._eof_message())
        proto = self.proto
        self._last_received = t = self.runtime.now()
        events = proto.receive_data(data, t)
        if self._dispatch(events):
            quick_ack = getattr(self.stream, "quick_ack", None)
            if quick_ack is not None:
                # A body is still coming: ACK what we read now, not after the kernel's
                # delayed-ACK timer. A server whose last, small segment waits on Nagle
                # for that ACK (nginx corks h2 output with sendfile and leaves
                # TCP_NODELAY off) otherwise stalls 40 ms per response.
                quick_ack()
        if proto.adaptive_window and self.exchanges:
            proto.maybe_sample_bdp(t)  # one PING per round trip while busy
        self.flush_soon()

    def _eof_message(self) -> str:
        if self.goaway_last_id is not None:
            code = error_name(self.goaway_error)
            return f"the server closed the HTTP/2 connection after GOAWAY ({code})"
        return "the server closed the HTTP/2 connection"

    def _dispatch(self, events: list[Any]) -> bool:
        """Hand events to their exchanges; ``True`` if a response body is unfinished."""
        exchanges = self.exchanges
        unacked: dict[int, int] = {}
        partial = False
        for ev in events:
            kind = type(ev)
            if kind is DataReceived:
                exchange = exchanges.get(ev.stream_id)
                if exchange is None or not (ev.data or ev.end_stream):
                    # Nobody to read it, or nothing to read (padding, an empty frame):
                    # credit it now and wake no one, so that empty frames cannot keep
                    # a request's read deadline moving (the protocol bounds them too).
                    self.proto.acknowledge(ev.stream_id, ev.flow_length)
                    continue
                partial = not ev.end_stream
                if exchange.collecting:
                    # read_body() is gathering everything: credit now, wake at the end.
                    if ev.flow_length:
                        unacked[ev.stream_id] = unacked.get(ev.stream_id, 0) + ev.flow_length
                    exchange.chunks.append((ev.data, 0))
                    exchange.buffered += len(ev.data)
                    if ev.end_stream:
                        exchange.ended = True
                        exchange._notify()
                    elif exchange.buffered > exchange.limit:
                        exchange._notify()
                    continue
                if ev.data or ev.flow_length:
                    exchange.chunks.append((ev.data, ev.flow_length))
                if ev.end_stream:
                    exchange.ended = True
                exchange._notify()
            elif kind is ResponseReceived:
                exchange = exchanges.get(ev.stream_id)
                if exchange is not None:
                    exchange.head = ev
                    exchange.head_at = perf_counter()
                    if ev.end_stream:
                        exchange.ended = True
                        exchange._notify()
                    elif not exchange.collecting:
                        exchange._notify()
            elif kind is StreamEnded:
                exchange = exchanges.get(ev.stream_id)
                if exchange is not None and not exchange.ended:
                    exchange.ended = True
                    exchange._notify()
            elif kind is WindowUpdated:
                if ev.stream_id == 0:
                    for exchange in exchanges.values():
                        exchange._notify_send()
                else:
                    exchange = exchanges.get(ev.stream_id)
                    if exchange is not None:
                        exchange._notify_send()
            elif kind is StreamReset:
                exchange = exchanges.get(ev.stream_id)
                if exchange is not None:
                    exchange._fail(self._reset_error(ev))
            elif kind is InformationalResponse:
                exchange = exchanges.get(ev.stream_id)
                if exchange is not None and ev.status == 100:
                    exchange.continued = True
                    exchange._notify()
            elif kind is TrailersReceived:
                exchange = exchanges.get(ev.stream_id)
                if exchange is not None:
                    exchange.trailers = ev.headers
            elif kind is SettingsChanged:
                self.max_streams = ev.max_concurrent_streams
                if not self._settings.done():
                    self._settings.set_result(None)
                elif self.on_change is not None:
                    self.on_change(self)  # the stream limit may have grown
            elif kind is PingAcked:
                if ev.data == KEEPALIVE_PING:
                    _wake(self._ping_waiter)
            elif kind is ConnectionTerminated:
                self._goaway(ev)
        for stream_id, flow in unacked.items():
            self.proto.acknowledge(stream_id, flow)
        return partial

    def _reset_error(self, ev: StreamReset) -> AioductError:
        code = ev.error_code
        if code == _REFUSED:
            return StreamNotProcessed("the server refused the HTTP/2 stream (REFUSED_STREAM)")
        who = "the server" if ev.remote else "the client (protocol error on this stream)"
        return StreamResetError(
            f"{who} reset the HTTP/2 stream: {error_name(code)}", error_code=code
        )

    def _goaway(self, ev: ConnectionTerminated) -> None:
        self.goaway_last_id = ev.last_stream_id
        self.goaway_error = ev.error_code
        debug = ev.additional_data.decode("utf-8", "replace")
        detail = f"{error_name(ev.error_code)}" + (f", {debug!r}" if debug else "")
        for stream_id, exchange in list(self.exchanges.items()):
            if stream_id > ev.last_stream_id:
                exchange._fail(
                    StreamNotProcessed(
                        f"the server sent GOAWAY ({detail}) before processing this request"
                    )
                )
        if not self.exchanges:
            self.close()
        if self.on_change is not None:
            self.on_change(self)

    # -- keep-alive ------------------------------------------------------------------------

    async def _keep_alive(self) -> None:
        """PING after ``keep_alive_interval`` of silence; no answer in time kills it."""
        cfg = self.config
        interval = cfg.keep_alive_interval
        assert interval is not None
        now = self.runtime.now
        loop = self.loop
        assert loop is not None  # no keep-alive task without a loop
        while self.error is None:
            idle_for = now() - self._last_received
            if idle_for < interval:
                await self.runtime.sleep(interval - idle_for)
                continue
            if not (self.exchanges or cfg.keep_alive_while_idle):
                await self.runtime.sleep(interval)
                continue
            waiter = self._ping_waiter = loop.create_future()
            self.proto.ping(KEEPALIVE_PING)
            self.flush()
            handle = loop.call_at(now() + cfg.keep_alive_timeout, _expire, waiter)
            try:
                await waiter
            except Expired:
                self._fail(
                    ReadError(
                        "the HTTP/2 connection did not answer a keep-alive PING within "
                        f"keep_alive_timeout={cfg.keep_alive_timeout:g}s; it was closed"
                    )
                )
                self.stream.close()
                return
            finally:
                handle.cancel()
                self._ping_waiter = None
            self._last_received = max(self._last_received, now())
