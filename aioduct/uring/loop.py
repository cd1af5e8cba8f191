"""UringEventLoop: CPython's proactor event loop, running on io_uring completions.

``BaseProactorEventLoop`` is a complete asyncio loop whose I/O is expressed as
operations that *complete* (it was written for Windows IOCP); plugging in
:class:`~aioduct.uring.proactor.UringProactor` makes it an io_uring loop on Linux with
the whole asyncio API on top: tasks, timers, ``run_in_executor``, ``getaddrinfo``,
``create_connection``, ``start_tls``, ``create_server``, datagram endpoints. aioduct's
request pipeline runs on it unchanged (through :class:`aioduct.runtimes.uring.UringRuntime`).

What this module adds to the stock proactor loop, and why:

* the loop sleeps in the ring itself (``io_uring_enter``, GIL released), so an idle loop
  notices a completion within microseconds in every completion mode, and the self-pipe
  is a poll on the ring (see :mod:`.proactor`);
* a socket transport whose receives and sends complete into plain callbacks instead of
  futures, receives into two alternating buffers (one copy per read instead of two),
  and tries a direct ``send()`` before using the ring (see :class:`_UringSocketTransport`);
  together these brought the loop from ~2x asyncio's CPU per round trip to par;
* ``shutdown()`` failing with ``ENOTCONN`` on a reset socket or an unconnected UDP
  socket no longer skips the ``close()`` after it (the stock code assumes Windows);
* ``sock_connect`` resolves host names like the selector loops do;
* ``add_signal_handler``/``remove_signal_handler`` (the stock proactor loop has none).

Not supported (as on CPython's Windows proactor loop): ``add_reader``/``add_writer``,
subprocesses, ``create_unix_connection``/``create_unix_server``.

Usage::

    from aioduct.uring.loop import run
    run(main())                                  # or:
    asyncio.Runner(loop_factory=aioduct.uring.loop.new_event_loop)

Call :func:`aioduct.uring.is_available` first where io_uring may be unusable: importing
this module imports liburing, and a liburing built for other CPUs dies with SIGILL.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import functools
import heapq
import operator
import signal
import socket
import threading
import time
from asyncio import base_events, events, format_helpers, proactor_events, protocols
from collections.abc import Callable, Coroutine
from contextvars import copy_context
from typing import Any, Final, TypeVar, TypeVarTuple, Unpack, cast

from ._ring import DEFAULT_ENTRIES, os_error
from .proactor import UringProactor

__all__ = ["UringEventLoop", "UringEventLoopPolicy", "new_event_loop", "run"]

_T = TypeVar("_T")
#: The largest receive buffer a socket transport grows to (two per connection). A
#: transport starts with the stock 64 KiB and quadruples its buffers whenever a receive
#: fills one: the kernel had more queued, so a large body arrives in a few completions
#: (each a Python callback chain and a task wake-up) instead of one per 64 KiB.
_MAX_RECV_BUFFER: Final = 1024 * 1024
#: The same for a protocol that receives large bodies directly (see receive_direct).
_DIRECT_RECV_BUFFER: Final = 64 * 1024
#: BaseEventLoop's timer-heap rule: with more than this many timers of which more than
#: this fraction are cancelled, rebuild the heap instead of popping them one by one.
_MIN_TIMERS: Final = base_events._MIN_SCHEDULED_TIMER_HANDLES  # type: ignore[attr-defined]
_CANCELLED_FRACTION: Final = base_events._MIN_CANCELLED_TIMER_HANDLES_FRACTION  # type: ignore[attr-defined]
_MAX_SELECT_TIMEOUT: Final = base_events.MAXIMUM_SELECT_TIMEOUT  # type: ignore[attr-defined]
#: call_soon builds Handles field by field: only where Handle has exactly these fields.
_BARE_HANDLES: Final = set(events.Handle.__slots__) == {
    "_callback",
    "_args",
    "_cancelled",
    "_loop",
    "_source_traceback",
    "_repr",
    "__weakref__",
    "_context",
}
_Handle: Final = events.Handle
_new_handle = object.__new__
_ECANCELED: Final = -errno.ECANCELED
#: A tuple, not ``bytes | bytearray | memoryview``: that builds a union object per call.
_BYTES_LIKE: Final = (bytes, bytearray, memoryview)
#: Protocol classes known to be BufferedProtocols (checked once per class, not per read).
_BUFFERED: set[type] = set()
_Ts = TypeVarTuple("_Ts")


class _LinuxCloseMixin:
    """``_call_connection_lost`` that survives ``shutdown()`` failing on Linux.

    The stock proactor transports call ``sock.shutdown(SHUT_RDWR)`` and then
    ``sock.close()`` with nothing in between to catch an error -- fine on Windows, but on
    Linux ``shutdown`` raises ``ENOTCONN`` for a socket the peer reset and for every
    unconnected UDP socket, which skipped the ``close()`` and leaked the fd.
    """

    _sock: socket.socket | None
    _protocol: asyncio.BaseProtocol
    _server: Any
    _called_connection_lost: bool

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._called_connection_lost:
            return
        try:
            self._protocol.connection_lost(cast(Exception | None, exc))
        finally:
            sock = self._sock
            if sock is not None:
                try:
                    if sock.fileno() != -1:
                        # Wakes a receive still in flight (it completes with EOF).
                        sock.shutdown(socket.SHUT_RDWR)
                except OSError:  # ENOTCONN after a reset: nothing left to shut down
                    pass
                sock.close()
                self._sock = None
            server = self._server
            if server is not None:
                server._detach()
                self._server = None
            self._called_connection_lost = True


class _UringSocketTransport(_LinuxCloseMixin, proactor_events._ProactorSocketTransport):
    """CPython's proactor socket transport, with its hot path moved off futures.

    The stock transport pays, per read and per write, for a future, a done callback and
    a trip through the ready queue, and copies every read twice for a
    ``BufferedProtocol``. Here:

    * receives and sends are ring operations with a plain completion callback
      (:meth:`UringProactor.recv_into_cb` / :meth:`UringProactor.send_cb`), run straight
      from ``select()`` like uvloop runs its protocol callbacks;
    * receives alternate between two buffers (``_data`` and ``_spare``), so the filled
      one is handed to the protocol as a ``memoryview`` while the kernel writes into the
      other -- one copy remains (into the protocol's buffer), and a receive can never
      land in bytes not yet delivered;
    * a write on an idle connection is first tried with a non-blocking ``send()``
      (:attr:`eager_send`): a request that fits the socket buffer then costs no ring
      operation at all; the rest goes through the ring.

    ``_read_fut``/``_write_fut`` hold the in-flight ring operations (objects with
    ``cancel()``), so the stock ``close``/``abort``/``write_eof`` code works unchanged.
    """

    #: Try a direct non-blocking send before handing a write to the ring.
    eager_send = True
    # Direct receives (see receive_direct): wanted by the protocol, the op, and what
    # _read_fut holds meanwhile (class defaults: most connections never use them).
    _direct_wanted = False
    _direct_op: Any = None
    _direct_handle: _DirectReceive | None = None

    # Attributes of the stock classes that typeshed does not declare.
    _loop: UringEventLoop
    _data: bytearray
    _buffer: bytearray | None
    _read_fut: Any
    _write_fut: Any
    _paused: bool
    _closing: bool
    _eof_written: bool
    _conn_lost: int
    _pending_write: int
    _pending_data_length: int
    _empty_waiter: asyncio.Future[None] | None
    _fatal_error: Callable[[BaseException, str], None]
    _force_close: Callable[[BaseException | None], None]
    _eof_received: Callable[[], None]
    _maybe_pause_protocol: Callable[[], None]
    _maybe_resume_protocol: Callable[[], None]

    def __init__(
        self,
        loop: UringEventLoop,
        sock: socket.socket,
        protocol: Any,
        waiter: asyncio.Future[Any] | None = None,
        extra: dict[str, Any] | None = None,
        server: Any = None,
    ) -> None:
        self._proactor = loop._proactor
        self._recv_op: Any = None
        super().__init__(loop, sock, protocol, waiter, extra, server)
        self._spare = bytearray(len(self._data))
        # Whole-buffer views made once: they pin the buffers (never resized) and make
        # each receive and delivery a slice instead of a new export.
        self._data_view = memoryview(self._data)
        self._spare_view = memoryview(self._spare)

    # -- reading -------------------------------------------------------------------------------

    def _loop_reading(self, fut: Any = None) -> None:
        # Scheduled by the stock __init__ and resume_reading(): start receiving.
        if self._read_fut is None and not self._closing and not self._paused:
            self._receive_next()

    def _receive_next(self) -> None:
        """Start the next receive: into the protocol's destination while it wants
        direct receives (see receive_direct), else into this transport's buffer."""
        if self._direct_wanted:
            self._start_direct()
        else:
            self._start_recv()

    def _start_recv(self) -> None:
        try:
            op = self._recv_op
            if op is None:
                assert self._sock is not None
                op = self._proactor.recv_into_cb(self._sock, self._data_view, self._on_recv)
            else:
                op = self._proactor.recv_again(op, self._data_view)
            self._read_fut = self._recv_op = op
        except OSError as exc:
            self._read_failed(exc)

    def _read_failed(self, exc: OSError) -> None:
        if isinstance(exc, ConnectionResetError):
            self._force_close(exc)
        elif not (isinstance(exc, ConnectionAbortedError) and self._closing):
            self._fatal_error(exc, "Fatal read error on socket transport")

    def _on_recv(self, res: int) -> None:
        self._read_fut = None
        if res < 0:
            self._read_failed(os_error(res))
            return
        if res == 0:  # end of stream: no further receive
            self._data_received(b"", 0)
            return
        filled = self._data_view
        grow = res == len(filled) and res < _MAX_RECV_BUFFER and self._may_grow(res)
        if grow:
            # The filled buffer is delivered (copied) below and then left behind; the
            # other one was not the target of any receive, so both can be replaced.
            size = min(4 * res, _MAX_RECV_BUFFER)
            self._spare = bytearray(size)
            self._spare_view = memoryview(self._spare)
        self._data, self._spare = self._spare, self._data
        self._data_view, self._spare_view = self._spare_view, filled
        if not self._closing and not self._paused:
            # The kernel fills the other buffer meanwhile (_start_recv, inlined: this
            # runs for every receive).
            try:
                self._read_fut = self._recv_op = self._proactor.recv_again(
                    self._recv_op, self._data_view
                )
            except OSError as exc:
                self._read_failed(exc)
        protocol: Any = self._protocol
        if type(protocol) in _BUFFERED and not self._paused:
            # _data_received's common case, inlined: a BufferedProtocol with room.
            try:
                buf = protocol.get_buffer(res)
                if len(buf) >= res:
                    buf[:res] = filled[:res]
                    protocol.buffer_updated(res)
                else:
                    protocols._feed_data_to_buffered_proto(protocol, filled[:res])  # type: ignore[attr-defined]
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
        else:
            self._data_received(filled[:res], res)
        if grow and not self._paused:
            # (while paused, the undelivered bytes wait in the small one: grow later)
            self._spare = bytearray(len(self._data))
            self._spare_view = memoryview(self._spare)

    # -- direct receives (into the protocol's destination) ----------------------------------

    def receive_direct(self) -> None:
        """Receive straight into the protocol's destination from now on.

        For a protocol that knows a large amount is coming (``AsyncioStream.read_into``
        on this loop, :class:`aioduct.runtimes.uring.UringStream`): instead of a receive
        into this transport's buffer and a copy into ``get_buffer()``, one
        ``MSG_WAITALL`` receive (:meth:`UringProactor.recv_all_cb`) into
        ``protocol.direct_region()``, completing once when it is full. A plain receive
        in flight is interrupted first (its bytes, if any, are delivered as usual).
        ``protocol.direct_done(nbytes)`` reports each direct receive's end -- after
        which the kernel no longer writes into the region -- and returns the next
        region, or ``None`` to go back to plain receives (``nbytes == -1``: ended by
        end of stream or an error, no next region).
        """
        if self._closing:
            return
        self._direct_wanted = True
        op = self._read_fut
        if op is None:
            if not self._paused:
                self._start_direct()
        elif op is self._recv_op:
            # Its completion comes to _on_recv_direct instead (_on_recv, the path of
            # every other receive, knows nothing of direct receives).
            op.callback = self._on_recv_direct
            self._proactor.interrupt(op)

    def _on_recv_direct(self, res: int) -> None:
        """The completion of the plain receive that receive_direct() interrupted."""
        self._read_fut = None
        op = self._recv_op
        op.callback = self._on_recv
        if res < 0:
            if res != _ECANCELED:
                self._read_failed(os_error(res))
                return
        elif res == 0:
            self._data_received(b"", 0)
            return
        else:
            # As _on_recv delivers (the paused path keeps the bytes in _spare).
            filled = self._data_view
            self._data, self._spare = self._spare, self._data
            self._data_view, self._spare_view = self._spare_view, filled
            self._data_received(filled[:res], res)
        if not self._closing and not self._paused and self._read_fut is None:
            self._receive_next()

    def end_direct(self) -> bool:
        """Back to plain receives; ``True`` if a direct receive is still in flight.

        That receive is interrupted; until ``protocol.direct_done()`` reports its end,
        the kernel may still write into the region.
        """
        self._direct_wanted = False
        return self.interrupt_direct()

    def interrupt_direct(self) -> bool:
        """End the direct receive in flight early (its completion reports what came).

        ``False`` if none is in flight.
        """
        op = self._direct_op
        return op is not None and self._proactor.interrupt(op)

    def _start_direct(self) -> None:
        region = self._protocol.direct_region()  # type: ignore[attr-defined]
        if region is None:
            self._direct_wanted = False
            self._start_recv()
            return
        try:
            assert self._sock is not None
            self._direct_op = self._proactor.recv_all_cb(
                self._sock, region, self._on_direct, self._direct_op
            )
        except OSError as exc:
            self._direct_wanted = False
            self._protocol.direct_done(-1)  # type: ignore[attr-defined]
            self._read_failed(exc)
            return
        handle = self._direct_handle
        if handle is None:
            handle = self._direct_handle = _DirectReceive(self)
        self._read_fut = handle

    def _on_direct(self, res: int) -> None:
        if self._read_fut is self._direct_handle:  # (not after close/abort)
            self._read_fut = None
        protocol: Any = self._protocol
        if res == 0:  # end of stream
            self._direct_wanted = False
            protocol.direct_done(-1)
            self._data_received(b"", 0)
            return
        if res < 0 and res != _ECANCELED:
            self._direct_wanted = False
            protocol.direct_done(-1)
            self._read_failed(os_error(res))
            return
        try:
            region = protocol.direct_done(max(res, 0))
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.direct_done() call failed.")
            return
        if region is None:
            self._direct_wanted = False
        if not self._closing and not self._paused and self._read_fut is None:
            self._receive_next()

    def _may_grow(self, size: int) -> bool:
        """Whether receive buffers of ``size`` may grow: not past 64 KiB for a protocol
        that has large bodies received directly (receive_direct), where every byte of a
        body that a receive into them takes before the direct receive starts is copied."""
        return size < _DIRECT_RECV_BUFFER or not hasattr(self._protocol, "direct_region")

    def _data_received(self, data: Any, length: int) -> None:
        if self._paused:
            # Delivered by resume_reading(); the bytes stay in ``_spare``, which no
            # receive targets while reading is paused.
            assert self._pending_data_length == -1
            self._pending_data_length = length
            return
        if length == 0:
            self._eof_received()
            return
        protocol = self._protocol
        if isinstance(protocol, protocols.BufferedProtocol):
            _BUFFERED.add(type(protocol))  # _on_recv delivers to it directly from now on
            try:
                buf: Any = protocol.get_buffer(length)
                if len(buf) >= length:
                    buf[:length] = data
                    protocol.buffer_updated(length)
                else:
                    protocols._feed_data_to_buffered_proto(protocol, data)  # type: ignore[attr-defined]
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
        else:
            cast(asyncio.Protocol, protocol).data_received(bytes(data))

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        if self._read_fut is None:
            self._loop.call_soon(self._loop_reading, None)
        length = self._pending_data_length
        self._pending_data_length = -1
        if length > -1:
            self._loop.call_soon(self._data_received, bytes(self._spare[:length]), length)

    # -- writing -------------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if (
            self._write_fut is None
            and type(data) is bytes
            and self.eager_send
            and not (self._conn_lost or self._eof_written or self._empty_waiter is not None)
        ):
            # The common case, with the checks below it passes in one test: bytes on an
            # idle connection (a request), which the kernel usually takes whole. (No
            # _conn_lost: close() has not begun, so the socket is still there.)
            try:
                sent = self._sock.send(data)  # type: ignore[union-attr]
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._write_failed(exc)
                return
            if sent != len(data):  # (b"": 0 == 0, nothing to do, as below)
                self._start_send(data[sent:])
            return
        if not isinstance(data, _BYTES_LIKE):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__}")
        if self._eof_written:
            raise RuntimeError("write_eof() already called")
        if self._empty_waiter is not None:
            raise RuntimeError("unable to write; sendfile is in progress")
        if not data:
            return
        if self._conn_lost:
            self._conn_lost += 1  # the stock transport ignores writes after a loss too
            return
        if isinstance(data, memoryview) and not (
            data.format == "B" and data.ndim == 1 and data.c_contiguous
        ):
            data = data.tobytes()  # byte offsets below must match len()
        if self._write_fut is None:  # idle: send now, the ring takes what does not fit
            assert self._buffer is None
            sent = 0
            if self.eager_send:
                try:
                    assert self._sock is not None
                    sent = self._sock.send(data)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as exc:
                    self._write_failed(exc)
                    return
                if sent == len(data):
                    return
            self._start_send(bytes(memoryview(data)[sent:]))  # a copy the caller cannot touch
        elif self._buffer is None:
            self._buffer = bytearray(data)
            self._maybe_pause_protocol()
        else:
            self._buffer.extend(data)
            self._maybe_pause_protocol()

    def _start_send(self, data: bytes | bytearray) -> None:
        try:
            assert self._sock is not None
            self._write_fut = self._proactor.send_cb(self._sock, data, self._on_sent)
        except OSError as exc:
            self._write_failed(exc)
            return
        self._pending_write = len(data)
        self._maybe_pause_protocol()

    def _write_failed(self, exc: OSError) -> None:
        if isinstance(exc, ConnectionResetError):
            self._force_close(exc)
        else:
            self._fatal_error(exc, "Fatal write error on socket transport")

    def _on_sent(self, res: int) -> None:
        self._write_fut = None
        self._pending_write = 0
        if res < 0:
            self._write_failed(os_error(res))
            return
        data = self._buffer
        self._buffer = None
        if data:
            self._start_send(data)  # nobody else references this bytearray any more
        else:
            if self._closing:
                self._loop.call_soon(self._call_connection_lost, None)
            if self._eof_written and self._sock is not None:
                self._sock.shutdown(socket.SHUT_WR)
            self._maybe_resume_protocol()
        if self._empty_waiter is not None and self._write_fut is None:
            self._empty_waiter.set_result(None)

    def _loop_writing(self, f: Any = None, data: Any = None) -> None:  # pragma: no cover
        # Only the stock write() calls this; ours never does.
        raise AssertionError("_UringSocketTransport does not use _loop_writing")


class _DirectReceive:
    """What ``_read_fut`` holds while a direct receive is in flight: the stock
    ``close()``/``abort()`` cancel it, and for a receive into the protocol's memory
    that must be an interrupt (the completion still runs, so the protocol learns when
    the kernel is done with its buffer), not a withdrawal."""

    __slots__ = ("_transport",)

    def __init__(self, transport: _UringSocketTransport) -> None:
        self._transport = transport

    def cancel(self) -> bool:
        return self._transport.interrupt_direct()


class _UringDatagramTransport(_LinuxCloseMixin, proactor_events._ProactorDatagramTransport):  # type: ignore[name-defined,misc]
    """The stock proactor datagram transport with the Linux-safe close."""


class UringEventLoop(proactor_events.BaseProactorEventLoop):
    """An asyncio event loop whose socket I/O is io_uring completions."""

    _proactor: UringProactor
    _ssock: socket.socket
    _csock: socket.socket

    def __init__(self, *, entries: int = DEFAULT_ENTRIES, mode: str | None = None) -> None:
        super().__init__(UringProactor(entries, mode))
        self._proactor.set_wakeup_socket(self._ssock)
        self._signal_handlers: dict[int, events.Handle] = {}
        # asyncio's time() and create_future() are Python methods that only forward to C
        # (time.monotonic, Future(loop=self)); a request calls them several times, and
        # on this loop -- unlike uvloop's, written in C -- every such frame counts.
        self.time = time.monotonic  # type: ignore[method-assign]
        self.create_future = functools.partial(asyncio.Future, loop=self)  # type: ignore[method-assign]

    def call_soon(
        self, callback: Callable[[Unpack[_Ts]], object], *args: *_Ts, context: Any = None
    ) -> events.Handle:
        """asyncio's call_soon in one frame instead of three: every task wake-up (a
        future resolved by a completion) comes through here, once per request or more."""
        if not self._plain_soon:  # closed (the stock code raises), or debug mode
            return super().call_soon(callback, *args, context=context)
        # Handle.__init__ without its frame (and its get_debug() call): the fields it
        # would set, set here.
        handle: Any = _new_handle(_Handle)
        handle._callback = callback
        handle._args = args
        handle._loop = self
        handle._context = copy_context() if context is None else context
        handle._cancelled = False
        handle._repr = None
        handle._source_traceback = None
        self._ready.append(handle)  # type: ignore[attr-defined]
        return handle  # type: ignore[no-any-return]

    def _run_once(self) -> None:
        """One turn of the loop: due timers, a wait for completions, the ready callbacks.

        ``BaseEventLoop._run_once`` with the callbacks run from this frame rather than
        through ``Handle._run`` (one Python frame less per callback: on this loop every
        task wake-up is one), as uvloop's C loop does. Debug mode keeps the stock code
        (slow-callback warnings, the current handle).
        """
        if self._debug:  # type: ignore[attr-defined]
            super()._run_once()  # type: ignore[misc]
            return
        self._drop_cancelled_timers()
        loop: Any = self  # the stock loop's private fields, which typeshed does not declare
        scheduled: list[Any] = loop._scheduled
        ready: collections.deque[Any] = loop._ready
        timeout: float | None = None
        if ready or loop._stopping:
            timeout = 0
        elif scheduled:
            timeout = min(max(0.0, scheduled[0]._when - self.time()), _MAX_SELECT_TIMEOUT)
        self._proactor.select(timeout)  # completions run their callbacks in there
        if scheduled:
            end = self.time() + loop._clock_resolution
            while scheduled and scheduled[0]._when < end:
                timer = heapq.heappop(scheduled)
                timer._scheduled = False
                ready.append(timer)
        for _ in range(len(ready)):  # not those the callbacks add: next turn, after I/O
            handle: Any = ready.popleft()
            if handle._cancelled:
                continue
            args = handle._args
            try:
                if len(args) == 1:  # a task wake-up or a future's callback: no *args tuple
                    handle._context.run(handle._callback, args[0])
                else:
                    handle._context.run(handle._callback, *args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._callback_failed(handle, exc)
        handle = None  # no cycle through a traceback

    def _drop_cancelled_timers(self) -> None:
        loop: Any = self
        scheduled: list[Any] = loop._scheduled
        cancelled: int = loop._timer_cancelled_count
        if not cancelled:
            return
        if len(scheduled) > _MIN_TIMERS and cancelled / len(scheduled) > _CANCELLED_FRACTION:
            for timer in scheduled:  # many: rebuild the heap without them
                if timer._cancelled:
                    timer._scheduled = False
            kept = [timer for timer in scheduled if not timer._cancelled]
            heapq.heapify(kept)
            loop._scheduled = kept
            loop._timer_cancelled_count = 0
            return
        while scheduled and scheduled[0]._cancelled:  # few: pop those due first
            loop._timer_cancelled_count -= 1
            heapq.heappop(scheduled)._scheduled = False

    def _callback_failed(self, handle: Any, exc: BaseException) -> None:
        """What ``Handle._run`` reports when a callback raises."""
        callback = format_helpers._format_callback_source(handle._callback, handle._args)
        context: dict[str, Any] = {
            "message": f"Exception in callback {callback}",
            "exception": exc,
            "handle": handle,
        }
        if handle._source_traceback:
            context["source_traceback"] = handle._source_traceback
        self.call_exception_handler(context)

    def set_debug(self, enabled: bool) -> None:
        super().set_debug(enabled)
        #: call_soon may build its Handle itself: open, not in debug mode (one check
        #: instead of two per call; close() clears it too).
        self._plain_soon = _BARE_HANDLES and not enabled and not self.is_closed()
        # Every Future asks its loop get_debug(): answer from C, not a Python frame.
        self.get_debug = functools.partial(operator.truth, enabled)  # type: ignore[method-assign]

    # -- transports ----------------------------------------------------------------------------

    def _make_socket_transport(
        self,
        sock: socket.socket,
        protocol: Any,
        waiter: asyncio.Future[Any] | None = None,
        extra: dict[str, Any] | None = None,
        server: Any = None,
    ) -> _UringSocketTransport:
        return _UringSocketTransport(self, sock, protocol, waiter, extra, server)

    def _make_ssl_transport(
        self,
        rawsock: socket.socket,
        protocol: Any,
        sslcontext: Any,
        waiter: asyncio.Future[Any] | None = None,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        extra: dict[str, Any] | None = None,
        server: Any = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> asyncio.Transport:
        from asyncio import sslproto

        ssl_protocol = sslproto.SSLProtocol(
            self,
            protocol,
            sslcontext,
            cast(Any, waiter),
            server_side,
            server_hostname,
            ssl_handshake_timeout=cast(Any, ssl_handshake_timeout),
            ssl_shutdown_timeout=cast(Any, ssl_shutdown_timeout),
        )
        _UringSocketTransport(self, rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    def _make_datagram_transport(
        self,
        sock: socket.socket,
        protocol: Any,
        address: Any = None,
        waiter: asyncio.Future[Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> asyncio.DatagramTransport:
        return _UringDatagramTransport(self, sock, protocol, address, waiter, extra)

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        """Connect ``sock``; a host name is resolved first, as on the selector loops."""
        if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            host = address[0]
            try:
                socket.inet_pton(sock.family, str(host).partition("%")[0])
            except (OSError, ValueError):
                infos = await self.getaddrinfo(
                    host, address[1], family=sock.family, type=sock.type, proto=sock.proto
                )
                if not infos:
                    raise OSError(f"getaddrinfo({host!r}) returned no addresses") from None
                address = infos[0][4]
        await self._proactor.connect(sock, address)

    # -- self-pipe -----------------------------------------------------------------------------

    def _close_self_pipe(self) -> None:
        self._proactor.set_wakeup_socket(None)
        super()._close_self_pipe()  # type: ignore[misc]

    # -- signals -------------------------------------------------------------------------------

    def add_signal_handler(
        self, sig: int, callback: Callable[[Unpack[_Ts]], object], *args: *_Ts
    ) -> None:
        """Run ``callback(*args)`` on the loop when signal ``sig`` arrives (main thread)."""
        if asyncio.iscoroutine(callback) or asyncio.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        if not isinstance(sig, int) or sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig!r}")
        self._check_closed()  # type: ignore[attr-defined]
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("signal handlers can only be added from the main thread")
        handle = events.Handle(callback, args, self, None)
        self._signal_handlers[sig] = handle
        try:
            signal.signal(sig, self._on_signal)
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            raise RuntimeError(f"signal {sig} cannot be caught: {exc}") from None

    def _on_signal(self, sig: int, _frame: object) -> None:
        # A Python-level handler runs in the main thread between bytecodes (once the
        # ring's wait returns: the signal's write to the self-pipe completes its poll),
        # so it can queue the callback directly.
        handle = self._signal_handlers.get(sig)
        if handle is None:
            return
        if handle._cancelled:
            self.remove_signal_handler(sig)
        else:
            self._add_callback_signalsafe(handle)  # type: ignore[attr-defined]

    def remove_signal_handler(self, sig: int) -> bool:
        """Restore the default disposition of ``sig``; ``False`` if no handler was set."""
        if self._signal_handlers.pop(sig, None) is None:
            return False
        default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, default)
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"cannot restore the handler of signal {sig}: {exc}") from None
        return True

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if not self.is_closed() and threading.current_thread() is threading.main_thread():
            for sig in list(self._signal_handlers):
                self.remove_signal_handler(sig)
        super().close()
        self._plain_soon = False


class UringEventLoopPolicy(events.BaseDefaultEventLoopPolicy):
    """An event loop policy whose loops are :class:`UringEventLoop` (Python 3.11 style).

    Prefer ``asyncio.Runner(loop_factory=new_event_loop)`` or :func:`run`; policies are
    deprecated from Python 3.14 on.
    """

    def new_event_loop(self) -> UringEventLoop:
        return UringEventLoop()

    def get_child_watcher(self) -> asyncio.AbstractChildWatcher:
        raise NotImplementedError(
            "UringEventLoop does not run subprocesses; use the default asyncio loop for them"
        )

    def set_child_watcher(self, watcher: asyncio.AbstractChildWatcher | None) -> None:
        self.get_child_watcher()


def new_event_loop(*, entries: int = DEFAULT_ENTRIES, mode: str | None = None) -> UringEventLoop:
    """A new io_uring event loop (a ring of ``entries`` submission slots).

    ``mode`` picks how completions are delivered (see :data:`aioduct.uring._ring.MODES`;
    default: the cheapest the kernel supports, or ``$AIODUCT_URING_MODE``).
    """
    return UringEventLoop(entries=entries, mode=mode)


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
    """``asyncio.run(main)`` on a fresh :class:`UringEventLoop`."""
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
