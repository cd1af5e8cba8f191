"""The io_uring runtime: aioduct's asyncio runtime on a :class:`UringEventLoop`.

:class:`~aioduct.uring.loop.UringEventLoop` is a full asyncio loop (CPython's proactor
loop over io_uring completions), so the asyncio runtime's streams -- a
``BufferedProtocol`` fed by ``recv_into`` completions, TLS through the sans-I/O
:class:`~aioduct.protocol.tls.TLSLayer` inside that same protocol -- work on it as they
are; TCP_NODELAY is set by the proactor transport, SO_KEEPALIVE by ``open_tcp``. What
differs is the name (timings, logs and tests report ``"uring"``), name resolution
(``getaddrinfo`` on the default executor, which on this loop is never frozen by the ring
waiting: the loop sleeps in ``io_uring_enter`` called through ``ctypes``, which releases
the GIL), and how a large body is received (:class:`UringStream`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from . import Expired
from .asyncio import _MIN_FREE, AsyncioRuntime, AsyncioStream

__all__ = ["UringRuntime", "UringStream"]


class UringStream(AsyncioStream):
    """An :class:`AsyncioStream` whose :meth:`read_into` has the kernel receive into
    the caller's buffer.

    On other loops the transport receives into its own buffer and ``get_buffer()``
    gets a copy; uvloop at least receives into ``get_buffer()`` directly, but one
    ``recv`` per readable event. Here a body is one ``MSG_WAITALL`` receive into the
    caller's buffer (``receive_direct()`` of the io_uring loop's socket transport): no
    copy, and one completion for what were dozens. The last ``_MIN_FREE`` bytes
    still come through the receive buffer, so bytes a server sends past the body are
    seen there (and the connection is not reused).

    Two rules make that safe and keep ``read_timeout`` a limit on silence:

    * the caller's buffer belongs to the kernel while a direct receive is in flight
      (``_direct_busy``); :meth:`read_into` never returns or raises before the
      transport's ``direct_done()`` call says it ended -- also when the read fails,
      times out, is cancelled or the connection closes -- because the caller then
      releases the buffer (a worker hands its span of the shared-memory ring to the
      next body);
    * a receive that completes only when full shows no progress until then, so when
      the read timer expires it is interrupted: the completion reports what came so
      far -- some bytes: not silence, the rest is received from there; none: expired.
    """

    # (Class defaults, not set per connection: most never receive a large body.)
    #: The transport receives into a region of _dest (until direct_done()).
    _direct_busy = False
    #: The read timer interrupted that receive: direct_done() gives the verdict.
    _interrupted = False
    #: What _settle() waits on.
    _settled: asyncio.Future[None] | None = None

    # -- called by the transport -------------------------------------------------------------

    def direct_region(self) -> memoryview | None:
        """Where the next direct receive goes: the caller's buffer up to its last
        ``_MIN_FREE`` bytes (``None``: nothing worth one)."""
        dest = self._dest
        if dest is None:
            return None
        start = self._dest_size
        end = len(dest) - _MIN_FREE
        if end - start < _MIN_FREE:
            return None
        self._direct_busy = True
        return dest[start:end]

    def direct_done(self, nbytes: int) -> memoryview | None:
        """A direct receive ended with ``nbytes`` in its region; the next region.

        ``-1``: it ended with the stream (end, error): no next region.
        """
        self._direct_busy = False
        settled = self._settled
        if settled is not None and not settled.done():
            settled.set_result(None)
        interrupted, self._interrupted = self._interrupted, False
        if nbytes < 0:
            return None
        if self._dest is None:
            if nbytes:
                # Bytes of a body nobody reads any more: the stream is out of step.
                self._eof = True
            return None
        self._dest_size += nbytes
        waiter = self._waiter
        if interrupted and waiter is not None and not waiter.done():
            if self._dest_size + self._size - self._start != self._dest_mark:
                waiter.set_result(None)  # not silence: read_into waits again, from now
            else:
                waiter.set_exception(Expired())
                return None
        return self.direct_region()

    def _on_timer(self) -> None:
        if not (self._direct_busy and self._dest is not None):
            super()._on_timer()
            return
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done() or self._interrupted:
            return
        progress = self._dest_size + self._size - self._start != self._dest_mark
        if progress or self._loop.time() >= self._deadline:
            # The receive in flight may hold bytes that came in this wait: ask for them
            # now (also after visible progress), so that they count for this wait and
            # not for the next -- silence is never stretched past two read timeouts.
            transport: Any = self._transport
            self._interrupted = transport is not None and transport.interrupt_direct()
            if self._interrupted:
                pass  # direct_done() gives the verdict
            elif progress:
                waiter.set_result(None)
            else:
                waiter.set_exception(Expired())
        else:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)
            self._timer_at = self._deadline

    # -- read_into's waits --------------------------------------------------------------------

    async def _receive_into(self, want: int, deadline: Callable[[], float | None]) -> None:
        """:meth:`AsyncioStream._receive_into`, received directly (see the class)."""
        transport: Any = self._transport
        if want < 2 * _MIN_FREE or not hasattr(transport, "receive_direct"):
            await super()._receive_into(want, deadline)
            return
        try:
            transport.receive_direct()
            await self._wait_filled(want, deadline)
        except GeneratorExit:  # the task is destroyed with its loop: nothing to wait for
            self._end_direct(transport)
            raise
        except BaseException:
            if self._end_direct(transport):
                await self._settle()
            raise
        if self._end_direct(transport):
            await self._settle()

    def _end_direct(self, transport: Any) -> bool:
        """Stop receiving into the caller's buffer; whether the kernel still may."""
        self._dest = None
        self._into_dest = False
        if transport is not None:
            transport.end_direct()
        return self._direct_busy

    async def _settle(self) -> None:
        """Wait until the direct receive in flight has ended (it was interrupted):
        only then may the caller release its buffer. A cancellation meanwhile is
        passed on afterwards."""
        cancelled: asyncio.CancelledError | None = None
        while self._direct_busy:
            settled = self._settled = self._loop.create_future()
            try:
                await settled
            except asyncio.CancelledError as exc:
                cancelled = exc
            finally:
                self._settled = None
        if cancelled is not None:
            raise cancelled


class UringRuntime(AsyncioRuntime):
    """Runs the pipeline on the running :class:`~aioduct.uring.loop.UringEventLoop`."""

    __slots__ = ()

    stream_type = UringStream

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(loop)
        self.name = "uring"
