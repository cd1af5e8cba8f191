"""The asyncio runtime: streams on ``asyncio.BufferedProtocol``, for any asyncio loop.

On uvloop (``aioduct.run()`` picks it when installed) the same code runs on libuv; nothing
here is loop-specific. The stream *is* the protocol object: the loop reads straight into
its reusable receive buffer (``get_buffer``/``buffer_updated``, no intermediate bytes
object per ``recv``), and a reader waits on one future per wake-up. Deadlines are plain
``loop.call_at`` timers, cancelled as soon as data arrives.

TLS is :class:`AsyncioTLSStream`: the same protocol object with the sans-I/O
:class:`~aioduct.protocol.tls.TLSLayer` between the transport and the receive buffer,
rather than ``loop.start_tls`` -- asyncio's ``sslproto`` is a second protocol stacked
on ours, costs several Python calls per record, and cannot resume a saved session.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any, Final, cast

from ..protocol.tls import MAX_RECORD_PLAINTEXT, TLSLayer
from . import Datagrams, Expired, unique_addresses
from .udp import DatagramQueue, LoopDatagrams, open_socket

__all__ = ["AsyncioRuntime", "AsyncioStream", "AsyncioTLSStream"]

_INITIAL_BUFFER: Final = 64 * 1024
#: Linux only; elsewhere quick_ack() does nothing.
_TCP_QUICKACK: Final[int | None] = getattr(socket, "TCP_QUICKACK", None)
_MIN_FREE: Final = 16 * 1024
#: What read_head takes of more than _HEAD_READ_ALL buffered bytes (see there): a
#: response head, and then some.
_HEAD_READ: Final = 64 * 1024
_HEAD_READ_ALL: Final = 256 * 1024
#: Stop reading from the socket while this much is received but not yet consumed.
_READ_HIGH_WATER: Final = 4 * 1024 * 1024
_WRITE_HIGH_WATER: Final = 256 * 1024
#: Receive buffers of closed streams kept for new streams (see _new_buffer): at most this
#: many, each at most _MAX_SPARE_SIZE (a buffer grows past 64 KiB on large responses).
_MAX_SPARE_BUFFERS: Final = 8
_MAX_SPARE_SIZE: Final = 256 * 1024
_spare_buffers: list[bytearray] = []


def _new_buffer() -> bytearray:
    """A receive buffer for a new stream: a closed stream's, or a fresh one.

    ``bytearray(n)`` zero-fills its memory; with a connection per request (no pool, or
    ``Connection: close`` servers) filling 64 KiB cost more than parsing the response.
    Streams give their buffer back on :meth:`AsyncioStream.close`, after which the loop
    never writes to it again (the transport is aborted) and nothing reads it.
    """
    try:
        return _spare_buffers.pop()  # atomic: loops on other threads share the list
    except IndexError:
        return bytearray(_INITIAL_BUFFER)


def _spare(buf: bytearray) -> None:
    """Keep the buffer of a stream that closed for a new stream (see :func:`_new_buffer`)."""
    if _INITIAL_BUFFER <= len(buf) <= _MAX_SPARE_SIZE and len(_spare_buffers) < _MAX_SPARE_BUFFERS:
        _spare_buffers.append(buf)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(Expired())


def _release_orphan(transport: asyncio.Transport) -> None:
    """Close the socket of ``transport`` whose event loop has closed.

    A client can outlive the loop it pooled connections on (``asyncio.run()`` twice with
    one client). ``abort()`` would schedule the clean-up on that loop, which never runs
    again, and raises "Event loop is closed"; so run the clean-up here: asyncio's
    selector and proactor transports and the io_uring loop's close their socket in
    ``_call_connection_lost``. uvloop's transports have no such method, and their
    ``abort()`` does not raise on a closed loop.
    """
    lost = getattr(transport, "_call_connection_lost", None)
    if lost is None:
        transport.abort()
        return
    with contextlib.suppress(RuntimeError):
        transport.abort()  # marks it closing; its call_soon raises on the closed loop
    lost(None)


class AsyncioStream(asyncio.BufferedProtocol):
    """A TCP (or TLS) connection: the protocol object doubles as the stream API."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._buf = _new_buffer()
        self._view = memoryview(self._buf)
        # Received bytes not yet read are _buf[_start:_size]; _start is 0 whenever the
        # buffer is empty (only read_head leaves bytes behind).
        self._start = self._size = 0
        #: While :meth:`read_into` waits: the caller's buffer the loop receives into,
        #: how much of it is filled, and how much was filled when its timer was armed.
        self._dest: memoryview | None = None
        self._dest_size = self._dest_mark = 0
        self._into_dest = False  # the buffer get_buffer handed out is _dest's
        self._eof = False
        self._closed = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self.writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        # uvloop's handles have no when(): remember when the timer fires ourselves.
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0
        self._deadline = 0.0
        #: The transport's socket for quick_ack() (fetched once; False: unavailable).
        self._sock: Any = None

    # -- protocol callbacks (called by the loop) ---------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the Transport API without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._dest is not None:
            return self._dest_buffer(sizehint)
        if len(self._buf) - self._size < _MIN_FREE:
            if self._start:
                self._compact()
            if len(self._buf) - self._size >= _MIN_FREE:
                return self._view[self._size :]
            grown = bytearray(max(2 * len(self._buf), self._size + max(sizehint, _MIN_FREE)))
            grown[: self._size] = self._view[: self._size]
            self._buf = grown
            self._view = memoryview(grown)
        return self._view[self._size :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._dest is not None:
            self._dest_updated(nbytes)
            return
        self._size += nbytes
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        # (_size, not _size - _start: a little early at worst, and cheaper)
        if self._size > _READ_HIGH_WATER and not self._reading_paused:
            assert self._transport is not None
            self._reading_paused = True
            self._transport.pause_reading()

    def _dest_buffer(self, sizehint: int) -> memoryview:
        """get_buffer while :meth:`read_into` waits: its buffer, but for the last
        ``_MIN_FREE`` bytes, which go through the receive buffer so that bytes a server
        sends beyond the body arrive with them and are seen there."""
        dest = self._dest
        assert dest is not None
        if len(dest) - self._dest_size > _MIN_FREE:
            self._into_dest = True
            return dest[self._dest_size : len(dest) - _MIN_FREE]
        self._dest = None  # (get_buffer's own path, then back)
        try:
            return self.get_buffer(sizehint)
        finally:
            self._dest = dest

    def _dest_updated(self, nbytes: int) -> None:
        """buffer_updated while :meth:`read_into` waits: wake it once all is there."""
        if self._into_dest:
            self._into_dest = False
            self._dest_size += nbytes
            return
        self._size += nbytes
        dest = self._dest
        assert dest is not None
        waiter = self._waiter
        if (
            waiter is not None
            and not waiter.done()
            and self._size - self._start >= len(dest) - self._dest_size
        ):
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if exc is not None:
            self._error = exc
        self._wake()
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    def _arm(self, deadline: float) -> None:
        """Make sure the read deadline timer fires no later than ``deadline``.

        Read deadlines mostly move forward (now + read_timeout), so one timer per
        connection is kept and re-armed lazily when it fires early, instead of creating
        and cancelling a timer for every read.
        """
        self._deadline = deadline
        timer = self._timer
        if timer is None or self._timer_at > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._dest is not None and self._dest_size + self._size - self._start != self._dest_mark:
            # read_into() got bytes since it armed the timer: not silence. It
            # computes its next deadline from now.
            waiter.set_result(None)
        elif self._loop.time() >= self._deadline:
            waiter.set_exception(Expired())
        else:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)
            self._timer_at = self._deadline

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- Stream API --------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed or self._transport is None:
            raise self._error or ConnectionResetError("connection is closed")
        self._transport.write(data)

    def quick_ack(self) -> None:
        """Acknowledge the bytes received so far now (TCP_QUICKACK, Linux).

        The kernel otherwise delays the ACK up to 40 ms on a request/response
        connection, hoping to piggyback it on the next request; a sender holding a
        small segment for that ACK (Nagle) then stalls for as long.
        """
        sock = self._sock
        if sock is None:
            transport = self._transport
            if transport is None or _TCP_QUICKACK is None:
                self._sock = False
                return
            sock = self._sock = transport.get_extra_info("socket") or False
        if sock:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
            except OSError:
                self._sock = False  # not TCP (e.g. a Unix socket): stop trying

    async def drain(self, deadline: float | None) -> None:
        while self.writing_paused:
            if self._closed:
                break
            waiter = self._drain_waiter = self._loop.create_future()
            handle = self._loop.call_at(deadline, _expire, waiter) if deadline else None
            try:
                await waiter
            finally:
                self._drain_waiter = None
                if handle is not None:
                    handle.cancel()
        if self._closed:
            raise self._error or ConnectionResetError("connection closed while sending")

    def read_head(self, deadline: float | None) -> Coroutine[Any, Any, bytes]:
        """Like :meth:`read`, but of a large amount only the first ``_HEAD_READ`` bytes:
        the first read of a response, whose head says how to read the rest. A large
        body received with its head stays here for :meth:`read_into` (copied once,
        into the caller's buffer) instead of becoming ``bytes`` first.

        (A plain method returning :meth:`read`'s coroutine: no coroutine of its own to
        resume at every wait.)"""
        return self.read(deadline, True)

    async def read(self, deadline: float | None, head: bool = False) -> bytes:
        if not self._size:
            if self._eof or self._closed:
                if self._error is not None:
                    raise self._error
                return b""
            waiter = self._waiter = self._loop.create_future()
            if deadline is not None:
                self._arm(deadline)
            try:
                await waiter
            finally:
                self._waiter = None
            if not self._size:
                if self._error is not None:
                    raise self._error
                return b""
        start, size = self._start, self._size
        if head and size - start > _HEAD_READ_ALL:
            end = self._start = start + _HEAD_READ
            return self._view[start:end].tobytes()
        data = self._view[start:size].tobytes()
        self._start = self._size = 0
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()
        return data

    def _compact(self) -> None:
        """Move the unread bytes to the front of the buffer (after a read_head)."""
        start, size = self._start, self._size
        self._view[: size - start] = self._view[start:size]
        self._start, self._size = 0, size - start

    async def read_into(self, view: memoryview, deadline: Callable[[], float | None]) -> int:
        """Fill ``view`` (writable bytes) with the next ``len(view)`` bytes received.

        Returns how many arrived: ``len(view)``, or fewer if the peer closed first. The
        loop receives straight into ``view`` (no ``bytes`` per receive; only its last
        ``_MIN_FREE`` bytes pass through the receive buffer) and the caller is woken
        once, when all of it is there. ``deadline()`` is called for each wait: a limit
        on silence, since a timer that fires after progress starts a new wait; it
        raises :class:`Expired` itself once a total deadline has passed
        (:meth:`~aioduct.timeouts.Deadlines.for_read`).
        """
        want = len(view)
        got = self._fill(view, 0)
        if got == want:
            return got
        self._dest_size = got
        self._dest = view
        await self._receive_into(want, deadline)
        got = self._fill(view, self._dest_size)
        if got < want and self._error is not None:
            raise self._error
        return got

    async def _receive_into(self, want: int, deadline: Callable[[], float | None]) -> None:
        """The waits of :meth:`read_into`; the destination is never received into once
        they end, however they end (a loop may override how it receives)."""
        try:
            await self._wait_filled(want, deadline)
        finally:
            self._dest = None  # never receive into the caller's buffer once it returned
            self._into_dest = False

    async def _wait_filled(self, want: int, deadline: Callable[[], float | None]) -> None:
        """Wait until the destination holds ``want`` bytes, or the stream ended."""
        while not (self._eof or self._closed):
            filled = self._dest_size + self._size - self._start
            if filled >= want:
                return
            # (deadline() raises Expired once the request's total deadline has
            # passed: progress restarts only the wait for silence below.)
            when = deadline()
            waiter = self._waiter = self._loop.create_future()
            self._dest_mark = filled
            if when is not None:
                self._arm(when)
            try:
                await waiter
            finally:
                self._waiter = None

    def take_buffered(self, count: int) -> memoryview | None:
        """The next ``count`` bytes if all of them are buffered (consumed), else None.

        The view is valid until the loop runs again: copy it at once.
        """
        start = self._start
        if self._size - start < count:
            return None
        view = self._view[start : start + count]
        self._consume(start, count)
        return view

    def _fill(self, view: memoryview, offset: int) -> int:
        """Copy buffered bytes into ``view[offset:]``; returns how much of it is filled."""
        start = self._start
        count = min(self._size - start, len(view) - offset)
        if count > 0:
            view[offset : offset + count] = self._view[start : start + count]
            self._consume(start, count)
            return offset + count
        return offset

    def _consume(self, start: int, count: int) -> None:
        """``count`` buffered bytes from ``start`` on were taken: drop them, and read
        again if a full buffer had paused reading."""
        if start + count < self._size:  # more is buffered (after a body: a bad server)
            self._start = start + count
        else:
            self._start = self._size = 0
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()

    def is_reusable(self) -> bool:
        transport = self._transport
        return (
            not self._closed
            and not self._eof
            and not self._size
            and transport is not None
            and not transport.is_closing()
        )

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if self._loop.is_closed():
                _release_orphan(transport)
            else:
                transport.abort()
        self._closed = True
        self._recycle_buffer()

    def _recycle_buffer(self) -> None:
        """Give the receive buffer to the next new stream; any unread bytes are dropped."""
        _spare(self._buf)
        # A private empty buffer from now on: should the loop still ask for one, it gets
        # a new one (get_buffer grows it) and never the recycled one. Closing twice
        # recycles nothing the second time.
        self._buf = bytearray()
        self._view = memoryview(self._buf)
        self._start = self._size = 0

    @property
    def alpn_protocol(self) -> str | None:
        obj = self.ssl_object
        return obj.selected_alpn_protocol() if obj is not None else None

    @property
    def ssl_object(self) -> ssl.SSLObject | ssl.SSLSocket | None:
        if self._transport is None:
            return None
        obj: ssl.SSLObject | ssl.SSLSocket | None = self._transport.get_extra_info("ssl_object")
        return obj

    @property
    def peer_address(self) -> tuple[str, int] | None:
        if self._transport is None:
            return None
        peer = self._transport.get_extra_info("peername")
        return (peer[0], peer[1]) if peer else None


#: What a closed TLS stream hands a loop that still asks for a buffer: never read.
_DISCARD: Final = memoryview(bytearray(_MIN_FREE))


class AsyncioTLSStream(AsyncioStream):
    """A TLS connection: ciphertext on the transport, plaintext through the stream API.

    The loop reads ciphertext into the plain stream's buffer (taken over by
    :meth:`upgrade`); :meth:`buffer_updated` hands it to the :class:`TLSLayer`, which
    decrypts every complete record straight into the receive buffer that ``read``
    takes from, so ``read``, deadlines, flow control and ``is_reusable`` are the plain
    stream's. One Python call into the layer per receive and per write, one
    ``transport.write`` per write; bytes are copied into the layer's memory BIO and
    decrypted into place, nothing more.

    Decrypting on arrival rather than in ``read`` also consumes records without data
    (TLS 1.3 session tickets) at once: an idle connection's buffer is empty unless the
    server really sent something, which is what ``is_reusable`` checks.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport, tls: TLSLayer
    ) -> None:
        super().__init__(loop)
        self._transport = transport
        self._tls = tls
        self._raw_view = _DISCARD  # set by upgrade()

    @classmethod
    def upgrade(cls, stream: AsyncioStream, tls: TLSLayer) -> AsyncioTLSStream:
        """Take over ``stream``'s transport (and its buffer, for ciphertext).

        ``stream`` is left closed without its transport: bytes it had received (a
        server that spoke first) go to the TLS layer, as does an EOF it saw. Raises
        ``OSError`` if the connection is already lost.
        """
        transport = stream._transport
        if stream._closed or transport is None:
            raise stream._error or ConnectionResetError("connection closed before TLS")
        new = cls(stream._loop, transport, tls)
        if stream._size:
            tls.receive_data(stream._view[stream._start : stream._size].tobytes())
        if stream._eof:
            tls.receive_data(b"")
        new._raw_view = stream._view
        stream._buf = bytearray()
        stream._view = memoryview(stream._buf)
        stream._start = stream._size = 0
        stream._transport = None
        stream._closed = True
        transport.set_protocol(new)
        return new

    # -- protocol callbacks ------------------------------------------------------------------

    #: Plaintext comes out of the TLS layer, not the loop: :meth:`read_into` is not
    #: offered (the connection reads the body with ``read``).
    read_into = None  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._raw_view

    def buffer_updated(self, nbytes: int) -> None:
        if self._closed:
            return
        if self._tls.handshake_complete:
            self._decrypt(self._raw_view[:nbytes])
        else:
            self._tls.receive_data(self._raw_view[:nbytes])
            self._handshake_step()

    def eof_received(self) -> bool:
        tls = self._tls
        if tls.handshake_complete:
            self._decrypt(b"")
        else:
            tls.receive_data(b"")
            self._handshake_step()
        self._eof = True
        self._wake()
        return False

    # -- TLS ---------------------------------------------------------------------------------

    async def handshake(self, deadline: float | None) -> None:
        """Run the handshake (raises ``ssl.SSLError``, ``OSError`` or :class:`Expired`)."""
        self._handshake_step()
        tls = self._tls
        if not tls.handshake_complete and not self._eof:
            waiter = self._waiter = self._loop.create_future()
            if deadline is not None:
                self._arm(deadline)
            try:
                await waiter
            finally:
                self._waiter = None
        if self._error is not None:
            raise self._error
        if not tls.handshake_complete:
            raise ConnectionResetError("the connection closed during the TLS handshake")

    def _handshake_step(self) -> None:
        tls = self._tls
        transport = self._transport
        assert transport is not None
        try:
            done = tls.do_handshake()
        except ssl.SSLError as exc:
            if tls.bytes_to_send and not transport.is_closing():
                transport.write(tls.data_to_send())  # the alert that tells the server why
            self._fail(exc)
            return
        if tls.bytes_to_send:
            transport.write(tls.data_to_send())
        if done:
            self._wake()
            if tls.pending_plaintext():
                self._decrypt(None)

    def _decrypt(self, data: memoryview | bytes | None) -> None:
        """Take ciphertext (``b""``: EOF), decrypt into the receive buffer, wake the reader."""
        tls = self._tls
        size = self._size
        # Plaintext is never longer than the ciphertext it came in, plus the rest of a
        # record begun in an earlier receive: with this much room one call takes it all.
        room = (len(data) if data else 0) + MAX_RECORD_PLAINTEXT
        while True:
            if len(self._buf) - size < room:
                grown = bytearray(max(2 * len(self._buf), size + room))
                grown[:size] = self._view[:size]
                self._buf = grown
                self._view = memoryview(grown)
            try:
                size += tls.read_into(self._view[size:], data)
            except ssl.SSLError as exc:  # a bad record or an alert: the connection is over
                self._size = size
                self._fail(exc)
                return
            if size < len(self._buf) or not tls.pending_plaintext():
                break
            data = None
        if tls.bytes_to_send:  # a handshake message (renegotiation) or an alert
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.write(tls.data_to_send())
        if tls.closed:
            self._eof = True
        elif size == self._size:
            return  # only a record without data (a session ticket), or part of a record
        self._size = size
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if size > _READ_HIGH_WATER and not self._reading_paused:
            assert self._transport is not None
            self._reading_paused = True
            self._transport.pause_reading()

    def _fail(self, exc: BaseException) -> None:
        """The TLS session is broken: readers get ``exc``, the transport is dropped."""
        self._error = exc
        self._eof = True
        self._wake()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    # -- Stream API --------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed or self._transport is None:
            raise self._error or ConnectionResetError("connection is closed")
        self._transport.write(self._tls.encrypt(data))

    def close(self) -> None:
        """Close, saying ``close_notify`` first when the connection is healthy and idle.

        RFC 8446 §6.1 asks for it before closing the write side; a server then knows the
        connection ended on purpose. A connection that failed, or still has request
        bytes queued (the rule is "discard unsent bytes"), is dropped without it.
        """
        transport = self._transport
        if (
            not self._closed
            and self._error is None
            and transport is not None
            and not transport.is_closing()
            and not transport.get_write_buffer_size()
        ):
            notify = self._tls.close()
            if notify:
                transport.write(notify)
            transport.close()  # after the write: close_notify, then FIN
        super().close()
        # The ciphertext buffer goes back too: the loop reads no more into it, and
        # should it still ask for a buffer, it gets _DISCARD.
        raw = self._raw_view.obj
        self._raw_view = _DISCARD
        if isinstance(raw, bytearray) and raw is not _DISCARD.obj:
            _spare(raw)

    @property
    def ssl_object(self) -> ssl.SSLObject:
        return self._tls.ssl_object


class AsyncioDatagrams(asyncio.DatagramProtocol, DatagramQueue):
    """A connected UDP endpoint as :class:`~aioduct.runtimes.Datagrams` (for a loop
    without ``add_reader``: the io_uring one; the others use :class:`LoopDatagrams`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        DatagramQueue.__init__(self)
        self._loop = loop
        self._transport: asyncio.DatagramTransport | None = None
        self._peer: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        peer = transport.get_extra_info("peername")
        if peer is not None:
            self._peer = (str(peer[0]), int(peer[1]))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        # Called once per datagram (~750 per MiB of a download): only the first of a
        # burst wakes the reader, which then takes the whole queue.
        queue = self._queue
        queue.append(data)
        if len(queue) == 1:
            self.wake()

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like, on the connected socket.
        self._error = exc if isinstance(exc, OSError) else OSError(str(exc))
        self.wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.wake()

    def send(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or self._closed:
            raise self._error or ConnectionResetError("the UDP socket is closed")
        transport.sendto(data)

    async def recv(self, deadline: float | None) -> list[bytes]:
        if not self._queue:
            self._check_open()
            waiter = self._waiter = self._loop.create_future()
            handle = self._loop.call_at(deadline, _expire, waiter) if deadline else None
            try:
                await waiter
            finally:
                self._waiter = None
                if handle is not None:
                    handle.cancel()
        queue, self._queue = self._queue, []
        return queue

    def close(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.abort()

    @property
    def peer_address(self) -> tuple[str, int]:
        return self._peer


class AsyncioRuntime:
    """Runs the pipeline on the running asyncio loop (stock asyncio or uvloop)."""

    __slots__ = ("_loop", "name", "now")

    background = True
    #: The stream (protocol) class of :meth:`open_tcp`'s connections.
    stream_type: type[AsyncioStream] = AsyncioStream

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        module = type(self._loop).__module__
        self.name = "uvloop" if module.startswith("uvloop") else "asyncio"
        #: The loop's own clock, bound directly: read several times per request, and a
        #: wrapper method would add a Python call each time.
        self.now: Callable[[], float] = self._loop.time

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self._loop.create_task(coro)

    async def resolve(self, host: str, port: int) -> list[tuple[int, str]]:
        infos = await self._loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return unique_addresses(infos)

    async def open_tcp(
        self,
        ip: str,
        port: int,
        *,
        deadline: float | None,
        local_address: str | None = None,
        keepalive: float | None = None,
    ) -> AsyncioStream:
        loop = self._loop
        local_addr = (local_address, 0) if local_address else None
        stream_type = self.stream_type
        try:
            async with asyncio.timeout_at(deadline):
                _transport, stream = await loop.create_connection(
                    lambda: stream_type(loop), ip, port, local_addr=local_addr
                )
        except TimeoutError:
            raise Expired() from None
        # TCP_NODELAY is already set: asyncio's selector and proactor transports and
        # uvloop's all set it on TCP sockets. The socket object is fetched only when
        # needed (on uvloop that wrapper costs two getsockname calls).
        if keepalive is not None:
            sock = _transport.get_extra_info("socket")
            if sock is not None:
                _set_keepalive(sock, keepalive)
        return stream

    async def open_udp(self, ip: str, port: int, *, local_address: str | None = None) -> Datagrams:
        loop = self._loop
        sock, gro = open_socket(ip, port, local_address)
        try:
            # Drained in bursts by one reader callback (aioduct.runtimes.udp)...
            return LoopDatagrams(loop, sock, gro, (ip, port))
        except NotImplementedError:  # ...on loops that have add_reader (not io_uring's)
            sock.close()
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        _transport, endpoint = await loop.create_datagram_endpoint(
            lambda: AsyncioDatagrams(loop),
            remote_addr=(ip, port),
            local_addr=(local_address, 0) if local_address else None,
            family=family,
        )
        return endpoint

    async def start_tls(
        self,
        stream: Any,
        context: ssl.SSLContext,
        server_hostname: str | None,
        *,
        deadline: float | None,
        session: ssl.SSLSession | None = None,
    ) -> AsyncioStream:
        assert isinstance(stream, AsyncioStream)
        try:
            tls = TLSLayer(context, server_hostname=server_hostname, session=session)
            secure = AsyncioTLSStream.upgrade(stream, tls)
        except BaseException:
            stream.close()
            raise
        try:
            await secure.handshake(deadline)
        except BaseException:
            secure.close()
            raise
        return secure


def _set_keepalive(sock: Any, idle: float) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    seconds = max(1, int(idle))
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, seconds)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, seconds)
