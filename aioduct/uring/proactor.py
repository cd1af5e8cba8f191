"""UringProactor: asyncio's proactor interface implemented with io_uring completions.

``asyncio.proactor_events.BaseProactorEventLoop`` -- the completion-based event loop
CPython ships for Windows IOCP -- drives its transports through a small *proactor*
object: ``recv``/``recv_into``/``send``/``connect``/``accept``/... each start an
operation and return a future, and ``select(timeout)`` waits for completions and resolves
those futures. This module implements that method set on an io_uring ring, so CPython's
own socket, SSL and datagram transports (and therefore ``create_connection``,
``start_tls`` and aioduct's unchanged pipeline) run on io_uring.

Windows-only parts of ``IocpProactor`` (named pipes, ``wait_for_handle``, overlapped
``_register``) have no io_uring meaning and are absent; nothing in
``BaseProactorEventLoop`` calls them. Two additions serve the io_uring loop's own
transports: ``recv_into_cb``/``recv_again``/``send_cb`` deliver a completion to a plain
callback run from ``select()`` (no future, no done callback, no ready-queue trip --
measured, that halved the loop's cost per round trip), and datagram calls that need a
peer address (``recvfrom``, ``sendto``) use a ring poll followed by a non-blocking
syscall.

What a request costs here is Python, so the per-request path is written for it:
:meth:`Ring.dispatch` reaps and calls a live callback op's callback itself (one Python
call per completion); a transport's receive keeps its op and ``user_data`` from one
receive to the next (:meth:`UringProactor.recv_again`), and its entry is a copy made
once per buffer and put into the queue (:meth:`Ring.recv_copy`), not prepared anew.

The rules that keep memory safe (the compio/monoio discipline):

* every in-flight operation is an :class:`_Op` in ``self._ops`` keyed by its
  ``user_data``; it pins the buffer (as a ``memoryview``, which also stops a
  ``bytearray`` from being resized), the socket and the kernel address until its
  completion is reaped -- also after cancellation;
* cancelling an operation the kernel has not seen yet rewrites its entry into a NOP --
  or, for a copied entry (which has no slot to rewrite), submits it at once, while its
  fd still names the socket the caller is about to close, and cancels it there; one the
  kernel has seen gets an ``IORING_OP_ASYNC_CANCEL`` and keeps its buffer until its own
  completion arrives, which may still report success (a cancelled ``accept`` that
  succeeded has its new fd closed);
* ``close()`` cancels everything, reaps until nothing is in flight (bounded), and only
  then tears the ring down; operations that never completed keep their buffers forever
  rather than risk the kernel writing into freed memory.

Waiting never holds the GIL: ``select()`` sleeps in :meth:`Ring.wait`
(``io_uring_enter`` through ``ctypes``), because liburing's own waits keep the GIL and
would freeze the executor threads that run ``getaddrinfo`` and ``run_in_executor`` work.
The loop's self-pipe is a poll on the ring, so ``call_soon_threadsafe`` and signals end
that sleep too. Sleeping in the ring rather than in ``epoll`` is what makes an idle loop
react within microseconds in every completion mode (see :mod:`._ring`);
:attr:`UringProactor.sleep_stats` counts how each sleep ended.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import select
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from ._ring import DEFAULT_ENTRIES, Ring, Sqe, make_sockaddr, os_error, put_sqe

__all__ = ["SleepStats", "UringProactor"]

_T = TypeVar("_T")

logger = logging.getLogger("aioduct.uring")

#: How long ``close()`` waits for cancelled operations to report back.
_CLOSE_GRACE: Final = 5.0
_SEND_FLAGS: Final = socket.MSG_NOSIGNAL
_ACCEPT_FLAGS: Final = socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
_DONTWAIT: Final = socket.MSG_DONTWAIT
_WAKEUP_READ: Final = 4096
_WAITALL: Final = socket.MSG_WAITALL

# Op.cancelled states.
_LIVE: Final = 0
_CANCEL_SENT: Final = 1  # the kernel was asked to cancel; the op may still succeed
_NEUTRALIZED: Final = 2  # the entry became a NOP before the kernel saw it

#: Buffers of operations a closed ring never reported back: kept alive for the life of
#: the process, because the kernel may still own them.
_ABANDONED: list[object] = []


@functools.cache
def waitall_reports_progress() -> bool:
    """Whether a ``MSG_WAITALL`` receive that ends early reports the bytes it received.

    Linux 6.x does (a cancelled or failed receive completes with its partial count);
    a kernel that reported ``-ECANCELED`` instead would hide bytes already taken from
    the socket, so :meth:`UringProactor.recv_all_cb` uses plain receives there. Asked
    once per process, on a socket pair and a small ring of its own: a one-byte
    receive of two, cancelled once the byte is in.
    """
    try:
        ring = Ring(4, "plain")
    except (OSError, ValueError, RuntimeError):
        return False
    a, b = socket.socketpair()
    results: dict[int, int] = {}
    view = memoryview(bytearray(2))
    try:
        ring.recv(2, a.fileno(), view, _WAITALL)
        ring.submit()
        b.send(b"x")
        deadline = time.monotonic() + 1.0
        ring.wait(0.005)  # the kernel copies the byte in (and waits for the next)
        ring.reap(results.__setitem__)
        ring.cancel(2)
        ring.submit()
        while 2 not in results and time.monotonic() < deadline:
            ring.wait(0.05)
            ring.reap(results.__setitem__)
        return results.get(2) == 1 and view[0] == ord("x")
    except OSError:
        return False
    finally:
        if 2 not in results:  # the kernel may still own the buffer: never free it
            _ABANDONED.append(view)
        ring.close()
        a.close()
        b.close()


class _Op:
    """One operation in flight: what it pins and how its completion is delivered.

    Delivery is either a future (the generic proactor API) or a plain ``callback(res)``
    run straight from the completion (the transports' hot path: no future, no done
    callback, no extra trip through the ready queue). Either way the op is also the
    handle the caller cancels with ``cancel()``.
    """

    __slots__ = (
        "_callback",
        "cancelled",
        "copies",
        "direct",
        "extra",
        "fd",
        "finish",
        "future",
        "gen",
        "owner",
        "progress",
        "sock",
        "sqe",
        "ud",
        "view",
    )

    def __init__(
        self,
        owner: UringProactor,
        ud: int,
        future: _OpFuture[Any] | None,
        callback: Callable[[int], object] | None,
        sock: socket.socket,
        fd: int,
        view: memoryview | None,
        extra: Any,
        finish: Callable[[_Op, int], None] | None,
    ) -> None:
        self.owner = owner
        self.ud = ud
        self.future = future
        self._callback = callback
        #: What :meth:`Ring.dispatch` calls with the result: the callback of a live
        #: callback op without a ``finish`` step; ``None`` sends it through ``_finish``.
        #: Kept in step with ``callback`` (its setter) and ``cancel``.
        self.direct = callback if finish is None else None
        self.sock = sock
        self.fd = fd
        self.view = view
        self.extra = extra
        self.finish = finish
        self.cancelled = _LIVE
        self.progress = 0
        #: recv_again's entries for this op: [view, copy, view, copy] (or None).
        self.copies: list[Any] | None = None
        self.sqe: Sqe | None = None
        self.gen = -1

    @property
    def callback(self) -> Callable[[int], object] | None:
        """What the completion is delivered to (callback ops); may be replaced in flight."""
        return self._callback

    @callback.setter
    def callback(self, callback: Callable[[int], object] | None) -> None:
        self._callback = callback
        if self.finish is None and not self.cancelled:
            self.direct = callback  # (Ring.dispatch calls ``direct``, not ``callback``)

    def cancel(self) -> bool:
        """Withdraw the operation; its callback will not run. ``False`` if already over."""
        if self.cancelled or self.owner._ops.get(self.ud) is not self:
            return False
        if self.future is not None:
            return self.future.cancel()
        self.owner._cancel(self)
        return True

    def __repr__(self) -> str:
        state = ("live", "cancelling", "withdrawn")[self.cancelled]
        return f"<uring op {getattr(self.finish, '__name__', '?')} fd={self.fd} {state}>"


class _OpFuture(asyncio.Future[_T]):
    """A future whose ``cancel()`` also withdraws the operation from the ring."""

    __slots__ = ("_op", "_proactor")

    _op: _Op | None
    _proactor: UringProactor

    def cancel(self, msg: Any | None = None) -> bool:
        op = self._op
        if op is not None and not self.done():
            self._op = None
            self._proactor._cancel(op)
        return super().cancel(msg=msg)


def _writable_view(buf: Any) -> memoryview:
    view = memoryview(buf)
    if view.readonly:
        raise TypeError(f"recv_into needs a writable buffer, got {type(buf).__name__}")
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view


def _readable_view(buf: Any) -> memoryview:
    view = memoryview(buf)
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view


@dataclass(slots=True)
class SleepStats:
    """How the loop's sleeps in :meth:`UringProactor.select` ended.

    A sleep ends because a completion is ready (an I/O operation, or the self-pipe that
    ``call_soon_threadsafe`` and signals write to), because its timeout -- the loop's next
    timer -- expired, or with nothing to do (a signal that interrupted it). An idle loop
    that is handed work should show only the first kind: work picked up because it
    arrived, not when a timer happened to fire or a late notification came through.
    """

    sleeps: int = 0
    """Times ``select()`` found nothing to do and slept."""
    woken_by_completion: int = 0
    """Sleeps that ended with completions ready to reap."""
    timed_out: int = 0
    """Sleeps that ended because their timeout expired."""
    asleep: bool = False
    """Whether the loop is in one of these sleeps right now."""

    @property
    def empty(self) -> int:
        """Sleeps that ended with nothing to reap and no timeout (signals, spurious)."""
        return self.sleeps - self.woken_by_completion - self.timed_out


class UringProactor:
    """The proactor ``BaseProactorEventLoop`` drives, on one io_uring ring."""

    def __init__(self, entries: int = DEFAULT_ENTRIES, mode: str | None = None) -> None:
        self._ring = Ring(entries, mode)
        #: The binding's ring for put_sqe (Ring.raw without a property call per
        #: receive); None from _teardown on, so nothing is put into a ring torn down.
        self._raw: object | None = self._ring.raw
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ops: dict[int, _Op] = {}
        self._last_ud = 1  # user_data 0 is refused by liburing, 1 is Ring's IGNORED
        self._results: list[asyncio.Future[Any]] = []
        self._wakeup: socket.socket | None = None
        self._wakeup_op: _Op | None = None
        #: How :meth:`select`'s sleeps ended (see :class:`SleepStats`).
        self.sleep_stats = SleepStats()

    def __repr__(self) -> str:
        state = "closed" if self._ring.closed else f"in_flight={len(self._ops)}"
        return f"<{type(self).__name__} {state}>"

    # -- wiring --------------------------------------------------------------------------------

    def set_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def set_wakeup_socket(self, sock: socket.socket | None) -> None:
        """Also end :meth:`select`'s sleep when ``sock`` (the loop's self-pipe) is readable.

        A poll on the ring, re-armed after each wakeup: ``call_soon_threadsafe`` from
        another thread and signals (through ``signal.set_wakeup_fd``) write to the other
        end. ``None`` withdraws it, before the loop closes the socket.
        """
        op, self._wakeup_op = self._wakeup_op, None
        if op is not None:
            op.cancel()
        self._wakeup = sock
        if sock is not None and not self._ring.closed:
            self._arm_wakeup(sock)

    def _arm_wakeup(self, sock: socket.socket) -> None:
        op = self._new_op(None, sock, None, None, None, self._on_wakeup)
        self._track(op, self._ring.poll(op.ud, op.fd, select.POLLIN))
        self._wakeup_op = op

    def _on_wakeup(self, res: int) -> None:
        self._wakeup_op = None
        sock = self._wakeup
        if sock is None or res < 0:
            return  # withdrawn, or the socket is gone (closing)
        self._drain_wakeup()
        if sock.fileno() != -1 and not self._ring.closed:
            self._arm_wakeup(sock)

    @property
    def in_flight(self) -> int:
        """Operations submitted (or queued) whose completion has not been reaped.

        The loop's own standing poll on its self-pipe is not counted.
        """
        return len(self._ops) - (self._wakeup_op is not None)

    def _check_open(self) -> None:
        if self._ring.closed:
            raise RuntimeError("UringProactor is closed")

    def _future(self) -> _OpFuture[Any]:
        fut: _OpFuture[Any] = _OpFuture(loop=self._loop)
        fut._op = None
        fut._proactor = self
        return fut

    def _new_op(
        self,
        future: _OpFuture[Any] | None,
        sock: socket.socket,
        view: memoryview | None,
        extra: Any,
        finish: Callable[[_Op, int], None] | None,
        callback: Callable[[int], object] | None = None,
    ) -> _Op:
        self._check_open()
        self._last_ud += 1
        return _Op(self, self._last_ud, future, callback, sock, sock.fileno(), view, extra, finish)

    def _track(self, op: _Op, sqe: Sqe) -> None:
        op.sqe = sqe
        op.gen = self._ring.generation
        self._ops[op.ud] = op
        if op.future is not None:
            op.future._op = op

    # -- callback operations (the transports' hot path) ---------------------------------------

    def recv_into_cb(
        self, conn: socket.socket, view: memoryview, callback: Callable[[int], object]
    ) -> _Op:
        """Receive into ``view`` and call ``callback(nbytes or -errno)`` from ``select()``.

        ``view`` (a non-empty byte ``memoryview``) stays pinned until the completion;
        the returned op's ``cancel()`` withdraws it (the callback then never runs).
        Re-arm a completed op with :meth:`recv_again` to skip allocating a new one.
        """
        op = self._new_op(None, conn, view, None, None, callback)
        self._track(op, self._ring.recv(op.ud, op.fd, view, 0))
        return op

    def recv_again(self, op: _Op, view: memoryview) -> _Op:
        """Receive into ``view`` with the completed callback op ``op`` (same socket)."""
        ops = self._ops
        ud = op.ud
        if op.cancelled or ud in ops:  # (a callback op: recv_into_cb's, never a future's)
            assert op.callback is not None
            return self.recv_into_cb(op.sock, view, op.callback)
        # The same user_data again (a fresh one per receive cost ~1k instructions per
        # request: a new int object, and the registry dict filling with deleted slots
        # and being rebuilt). Safe: its completion was reaped, so no entry of the ring
        # carries it any more, and a cancel request targeting it was queued before this
        # entry -- the kernel handles entries in order, so it cannot reach this one.
        # The entry is a copy made once per buffer (Ring.recv_copy): a transport
        # alternates between two buffers, so two copies serve every receive, and putting
        # one into the queue costs ~2k instructions less than preparing an entry there.
        copies = op.copies
        if copies is not None and view is copies[0]:
            copy = copies[1]
        elif copies is not None and view is copies[2]:
            copy = copies[3]
        else:
            copy = self._recv_copy(op, view)
        ring = self._ring
        raw = self._raw
        if raw is None:
            raise RuntimeError("UringProactor is closed")
        if not put_sqe(raw, copy):  # the queue is full: hand it to the kernel, retry
            ring.submit()
            if not put_sqe(raw, copy):
                raise ring.queue_full()
        op.view = view
        op.sqe = None  # (a copy: _cancel submits it before cancelling, see there)
        op.gen = ring.generation
        ops[ud] = op
        return op

    def recv_all_cb(
        self,
        conn: socket.socket,
        view: memoryview,
        callback: Callable[[int], object],
        op: _Op | None = None,
    ) -> _Op:
        """Receive all of ``view`` in one operation; then ``callback(nbytes or -errno)``.

        With ``MSG_WAITALL`` (where :func:`waitall_reports_progress`) the kernel
        completes it only once ``view`` is full, at end of stream or on an error -- one
        completion for what would otherwise be one per segment burst -- and reports the
        bytes received so far when it ends early (:meth:`interrupt`). Elsewhere it is a
        plain receive that may come back short. ``op``: a completed op of this method
        to reuse.
        """
        flags = _WAITALL if waitall_reports_progress() else 0
        if op is None or op.cancelled or op.ud in self._ops or op.future is not None:
            op = self._new_op(None, conn, view, None, None, callback)
            self._track(op, self._ring.recv(op.ud, op.fd, view, flags))
            return op
        ud = self._last_ud = self._last_ud + 1
        op.ud = ud
        op.view = view
        ring = self._ring
        op.sqe = ring.recv(ud, op.fd, view, flags)
        op.gen = ring.generation
        self._ops[ud] = op
        return op

    def interrupt(self, op: _Op) -> bool:
        """Ask the kernel to end ``op`` early; unlike ``cancel()`` its callback still runs.

        The completion then reports what the operation did until it ended -- for a
        receive, the bytes already in its buffer (or ``-ECANCELED`` if none) -- and the
        buffer stays pinned until it arrives. The request may find the operation done
        already; that completion is delivered as usual. ``False`` if ``op`` is not in
        flight.
        """
        if op.cancelled or self._ops.get(op.ud) is not op or self._ring.closed:
            return False
        # Also for an entry not submitted yet: the kernel takes entries in order, so
        # the cancel request finds the receive issued before it.
        self._ring.cancel(op.ud)
        return True

    def send_cb(self, conn: socket.socket, data: Any, callback: Callable[[int], object]) -> _Op:
        """Send all of ``data`` (non-empty); then ``callback(total or -errno)``."""
        view = _readable_view(data)
        op = self._new_op(None, conn, view, _SEND_FLAGS, self._finish_send, callback)
        self._track(op, self._ring.send(op.ud, op.fd, view, _SEND_FLAGS))
        return op

    def _recv_copy(self, op: _Op, view: memoryview) -> Sqe:
        """Make (and keep) ``op``'s receive entry for ``view``, replacing the copy for
        a buffer the transport no longer uses (it alternates between two, and replaces
        both when they grow; the copies' views keep their buffers alive meanwhile)."""
        copy = self._ring.recv_copy(op.ud, op.fd, view)
        copies = op.copies
        if copies is None:
            op.copies = [view, copy, None, None]
        elif copies[0] is op.view:  # the buffer the last receive filled: used next
            copies[2:] = [view, copy]
        else:
            copies[:2] = [view, copy]
        return copy

    # -- operations ----------------------------------------------------------------------------

    def recv(self, conn: socket.socket, nbytes: int, flags: int = 0) -> asyncio.Future[bytes]:
        """Receive up to ``nbytes``; ``b""`` at end of stream."""
        fut = self._future()
        if nbytes <= 0:
            self._check_open()
            fut.set_result(b"")
            return fut
        view = memoryview(bytearray(nbytes))
        op = self._new_op(fut, conn, view, None, self._finish_recv)
        self._track(op, self._ring.recv(op.ud, op.fd, view, flags))
        return fut

    def recv_into(self, conn: socket.socket, buf: Any, flags: int = 0) -> asyncio.Future[int]:
        """Receive into ``buf`` (pinned until the completion); resolves to the byte count."""
        fut = self._future()
        view = _writable_view(buf)
        if not view.nbytes:
            self._check_open()
            fut.set_result(0)
            return fut
        op = self._new_op(fut, conn, view, None, self._finish_count)
        self._track(op, self._ring.recv(op.ud, op.fd, view, flags))
        return fut

    def send(self, conn: socket.socket, buf: Any, flags: int = 0) -> asyncio.Future[None]:
        """Send all of ``buf`` (a short send is resubmitted); resolves to ``None``.

        The proactor transports assume a completed send wrote everything, as IOCP does;
        a stream socket on io_uring may report less, so the rest is sent before the
        future resolves. ``MSG_NOSIGNAL`` turns a closed peer into ``BrokenPipeError``.
        """
        fut = self._future()
        view = _readable_view(buf)
        if not view.nbytes:
            self._check_open()
            fut.set_result(None)
            return fut
        flags |= _SEND_FLAGS
        op = self._new_op(fut, conn, view, flags, self._finish_send)
        self._track(op, self._ring.send(op.ud, op.fd, view, flags))
        return fut

    def connect(self, conn: socket.socket, address: Any) -> asyncio.Future[None]:
        """Connect ``conn`` to a numeric ``address`` (the loop resolves names first)."""
        self._check_open()
        addr = make_sockaddr(conn.family, address)
        fut = self._future()
        op = self._new_op(fut, conn, None, addr, self._finish_none)
        self._track(op, self._ring.connect(op.ud, op.fd, addr))
        return fut

    def accept(self, listener: socket.socket) -> asyncio.Future[tuple[socket.socket, Any]]:
        """Accept one connection: resolves to ``(non-blocking socket, peer address)``."""
        fut = self._future()
        op = self._new_op(fut, listener, None, None, self._finish_accept)
        self._track(op, self._ring.accept(op.ud, op.fd, _ACCEPT_FLAGS))
        return fut

    def recvfrom(
        self, conn: socket.socket, nbytes: int, flags: int = 0
    ) -> asyncio.Future[tuple[bytes, Any]]:
        """``recvfrom`` via readiness: a ring poll, then a non-blocking syscall."""
        return self._when_ready(
            conn, select.POLLIN, lambda: conn.recvfrom(nbytes, flags | _DONTWAIT)
        )

    def recvfrom_into(
        self, conn: socket.socket, buf: Any, nbytes: int = 0, flags: int = 0
    ) -> asyncio.Future[tuple[int, Any]]:
        """``recvfrom_into`` via readiness (see :meth:`recvfrom`)."""
        return self._when_ready(
            conn, select.POLLIN, lambda: conn.recvfrom_into(buf, nbytes, flags | _DONTWAIT)
        )

    def sendto(
        self, conn: socket.socket, buf: Any, flags: int = 0, addr: Any = None
    ) -> asyncio.Future[int]:
        """``sendto`` via readiness (see :meth:`recvfrom`); resolves to the byte count."""
        data = bytes(buf)
        if addr is None:
            return self._when_ready(
                conn, select.POLLOUT, lambda: conn.send(data, flags | _DONTWAIT)
            )
        return self._when_ready(
            conn, select.POLLOUT, lambda: conn.sendto(data, flags | _DONTWAIT, addr)
        )

    def sendfile(self, sock: socket.socket, file: Any, offset: int, count: int) -> Any:
        """Not native here: asyncio's ``sendfile`` falls back to reading and sending."""
        raise asyncio.SendfileNotAvailableError(
            "the io_uring proactor has no native sendfile; use loop.sendfile(..., fallback=True)"
        )

    def _when_ready(
        self, conn: socket.socket, mask: int, attempt: Callable[[], _T]
    ) -> asyncio.Future[_T]:
        # Datagram calls need the peer address, which plain recv/send do not report;
        # trying the syscall first saves a ring round trip when data is already there.
        fut = self._future()
        self._check_open()
        try:
            fut.set_result(attempt())
        except (BlockingIOError, InterruptedError):
            self._arm_poll(fut, conn, mask, attempt)
        except OSError as exc:
            fut.set_exception(exc)
        return fut

    def _arm_poll(
        self, fut: _OpFuture[Any], conn: socket.socket, mask: int, attempt: Callable[[], Any]
    ) -> None:
        op = self._new_op(fut, conn, None, (mask, attempt), self._finish_poll)
        self._track(op, self._ring.poll(op.ud, op.fd, mask))

    # -- completions ---------------------------------------------------------------------------

    def _finish_count(self, op: _Op, res: int) -> None:
        fut = op.future
        assert fut is not None
        if res < 0:
            fut.set_exception(os_error(res))
        else:
            fut.set_result(res)

    def _finish_none(self, op: _Op, res: int) -> None:
        fut = op.future
        assert fut is not None
        if res < 0:
            fut.set_exception(os_error(res))
        else:
            fut.set_result(None)

    def _finish_recv(self, op: _Op, res: int) -> None:
        fut = op.future
        assert fut is not None
        if res < 0:
            fut.set_exception(os_error(res))
        else:
            assert op.view is not None
            fut.set_result(op.view[:res].tobytes())

    def _finish_send(self, op: _Op, res: int) -> None:
        view = op.view
        assert view is not None
        if res >= 0:
            op.progress += res
            if op.progress < view.nbytes:
                if res > 0 and op.sock.fileno() == op.fd:
                    self._track(op, self._ring.send(op.ud, op.fd, view[op.progress :], op.extra))
                    return
                res = -errno.EPIPE  # no progress, or the socket was closed under us
        fut = op.future
        if fut is None:
            assert op.callback is not None
            op.callback(op.progress if res >= 0 else res)
        elif res < 0:
            fut.set_exception(os_error(res))
        else:
            fut.set_result(None)

    def _finish_accept(self, op: _Op, res: int) -> None:
        fut = op.future
        assert fut is not None
        if res < 0:
            fut.set_exception(os_error(res))
            return
        try:
            conn = socket.socket(fileno=res)
        except OSError as exc:
            os.close(res)
            fut.set_exception(exc)
            return
        try:
            peer = conn.getpeername()
        except OSError:  # already reset by the peer; the transport will find out
            peer = None
        fut.set_result((conn, peer))

    def _finish_poll(self, op: _Op, res: int) -> None:
        fut = op.future
        assert fut is not None
        if res < 0:
            fut.set_exception(os_error(res))
            return
        mask, attempt = op.extra
        try:
            result = attempt()
        except (BlockingIOError, InterruptedError):  # spurious wakeup: wait again
            if op.sock.fileno() == op.fd:
                self._arm_poll(fut, op.sock, mask, attempt)
            else:
                fut.set_exception(OSError(9, "the socket was closed"))
        except OSError as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    def _complete(self, user_data: int, res: int) -> None:
        op = self._ops.pop(user_data, None)
        if op is None:  # a cancel request's own completion, or an unknown id
            return
        self._finish(op, res)

    def _finish(self, op: _Op, res: int) -> None:
        """A reaped completion's delivery (:meth:`Ring.dispatch` makes the common case,
        a live callback op, itself)."""
        if op.cancelled:
            if op.cancelled == _CANCEL_SENT and res >= 0 and op.finish == self._finish_accept:
                os.close(res)  # cancelled too late: the connection was accepted anyway
            return
        fut = op.future
        if fut is None:
            # Runs transport code directly, as uvloop runs protocol callbacks from its
            # poll phase; an error must reach the loop's handler, not stop the reaping.
            try:
                finish = op.finish
                if finish is None:
                    op.callback(res)  # type: ignore[misc]
                else:
                    finish(op, res)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._report(exc, op)
            return
        if fut.done():  # pragma: no cover - every cancel goes through _OpFuture.cancel
            return
        fut._op = None
        try:
            op.finish(op, res)  # type: ignore[misc]  # future ops always have one
        except Exception as exc:  # a bug here must not take the whole loop down
            if not fut.done():
                fut.set_exception(exc)
            else:  # pragma: no cover
                logger.exception("io_uring completion handler failed")
        if fut.done():
            self._results.append(fut)

    def _report(self, exc: BaseException, op: _Op) -> None:
        context = {"message": f"Exception in io_uring completion of {op!r}", "exception": exc}
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_exception_handler(context)
        else:  # pragma: no cover
            logger.error("%s", context["message"], exc_info=exc)

    def _cancel(self, op: _Op) -> None:
        if op.cancelled or self._ops.get(op.ud) is not op:
            return
        ring = self._ring
        if ring.closed:
            return
        op.direct = None  # its completion goes through _finish, which drops it
        if op.gen == ring.generation:  # prepared, not handed to the kernel yet
            if op.sqe is not None:
                op.cancelled = _NEUTRALIZED
                ring.neutralize(op.sqe, op.ud)
                op.sqe = None
                return
            # A copied entry (recv_again) has no slot to rewrite: hand it to the kernel
            # now, while its fd still names this socket (the caller closes it next, and
            # the number may be reused before the next submission), then cancel it
            # there. Only a kernel refusing the submission leaves it queued (the cancel
            # request follows it, so it is withdrawn as soon as it is issued).
            if ring.usable_here():
                try:
                    ring.submit()
                except OSError as exc:  # pragma: no cover - the kernel refused work
                    logger.debug("io_uring: cannot submit before cancelling (%s)", exc)
        op.cancelled = _CANCEL_SENT
        ring.cancel(op.ud)
        op.sqe = None

    # -- the event loop's hooks ----------------------------------------------------------------

    def select(self, timeout: float | None = None) -> list[asyncio.Future[Any]]:
        """Submit queued entries, resolve completed futures, and wait if none completed.

        Sleeps (GIL released) in the ring until an operation completes, the self-pipe is
        written, or ``timeout`` seconds pass (``None``: no limit). Returns
        the futures resolved by this call (``BaseProactorEventLoop`` ignores the list:
        resolving them already scheduled their callbacks).
        """
        ring = self._ring
        ring.submit()
        ops, finish, report = self._ops, self._finish, self._report
        if not ring.dispatch(ops, finish, report) and timeout != 0:
            stats = self.sleep_stats
            stats.sleeps += 1
            stats.asleep = True
            expired = not ring.wait(timeout)
            stats.asleep = False
            if expired:
                stats.timed_out += 1
            if ring.dispatch(ops, finish, report):
                stats.woken_by_completion += 1
        ring.submit()  # entries prepared by completions (short sends, re-armed polls)
        results = self._results
        self._results = []
        return results

    def _drain_wakeup(self) -> None:
        sock = self._wakeup
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(_WAKEUP_READ)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # closed under us during shutdown
                return
            if len(data) < _WAKEUP_READ:
                return

    def _stop_serving(self, sock: socket.socket) -> None:
        for op in list(self._ops.values()):
            if op.sock is sock:
                op.cancel()

    def close(self) -> None:
        """Cancel every operation, reap their completions, then tear the ring down."""
        ring = self._ring
        if ring.closed:
            return
        for op in list(self._ops.values()):
            fut = op.future
            try:
                if fut is not None and not fut.done():
                    fut.cancel()
            except RuntimeError:  # the loop is closed: callbacks cannot be scheduled
                pass
            self._cancel(op)
        deadline = time.monotonic() + _CLOSE_GRACE
        # A "defer" ring only does work for the thread that ran the loop; closed from
        # another thread, tearing the ring down cancels everything and the buffers are
        # kept, as for stragglers.
        while self._ops and ring.usable_here():
            try:
                ring.submit()
            except OSError as exc:  # pragma: no cover - the kernel refused more work
                logger.debug("io_uring: cannot drain on close (%s); abandoning", exc)
                break
            if ring.reap(self._complete):
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            ring.wait(min(remaining, 0.1))
        if self._ops:
            if time.monotonic() >= deadline:
                logger.warning(
                    "io_uring: %d operation(s) did not report back within %.0f s of "
                    "close(); keeping their buffers alive",
                    len(self._ops),
                    _CLOSE_GRACE,
                )
            self._abandon()
        self._teardown()

    def _abandon(self) -> None:
        _ABANDONED.extend((op.view, op.extra, op.sock) for op in self._ops.values())
        self._ops.clear()

    def _teardown(self) -> None:
        self._raw = None
        self._ring.close()
        self._wakeup = None
        self._wakeup_op = None
        self._results = []

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        ring = getattr(self, "_ring", None)
        if ring is not None and not ring.closed:
            _warn(f"unclosed {self!r}", ResourceWarning, source=self)
            self._abandon()  # the kernel may still write into them: never free
            self._teardown()
