"""The io_uring ring: the only module that talks to liburing.

A thin, typed layer over the ``liburing`` Cython binding (pinned to 2024.5.3): set up and
tear down one ring, prepare submission entries (SQEs) for the operations the event loop
needs, submit them, and reap completions (CQEs) without ever blocking. It knows nothing
about asyncio, futures or buffers' owners -- :mod:`aioduct.uring.proactor` keeps the
in-flight registry that pins every buffer until its completion arrives.

Two facts about the binding shape this module:

* Its waiting calls (``io_uring_wait_cqe``, ``io_uring_submit_and_wait``) hold the GIL
  while the thread sleeps, freezing every other thread of the process (the executor that
  runs ``getaddrinfo`` included). So :meth:`Ring.submit` and :meth:`Ring.reap` never
  wait, and :meth:`Ring.wait` sleeps in ``io_uring_enter(2)`` called through ``ctypes``,
  which releases the GIL for the duration of the call.
* Its ``io_uring_cqe`` indexing assumes the completion queue never wraps, and its
  batch-peek writes an array of pointers into a single-pointer slot. :meth:`Ring.reap`
  (and :meth:`Ring.dispatch`, the event loop's reap-and-deliver) therefore reaps one
  entry at a time (peek, copy, mark seen), which is always correct.
* Each entry it hands out is a new Python object, and each buffer passed to it is
  validated again: preparing a receive cost ~2k instructions. A receive the event loop
  repeats (same socket, same buffer) is therefore prepared once into memory of its own
  (:meth:`Ring.recv_copy`) and copied into the queue each time (:data:`put_sqe`).

How completions reach the thread is the ring's *mode* (:data:`MODES`): by default the
kernel interrupts the running thread for every completion, which measured here cost
~5 µs of system time per completion; ``"coop"`` lets completions wait for the thread's
next syscall, and ``"defer"`` (the default where the kernel has it) runs them in one
batch when the thread asks for completions.

Why the loop sleeps in the ring itself rather than in ``epoll``: in ``"defer"`` mode a
completion is work queued for the thread, which the kernel runs only inside
``io_uring_enter(GETEVENTS)``. The ring fd never polls readable for that work, and a
registered eventfd -- the documented way to hear about it -- was signalled only after
13-16 ms on Linux 6.18 (consistently, idle or not; measured on a socket pair): an idle
local-engine worker took that long to notice each job and each response (31 ms per
sequential request). A thread asleep in ``io_uring_enter`` is woken by the kernel the
moment such work is queued (~20 µs here), in every mode.

``user_data`` is an operation id chosen by the caller; 0 is refused by the binding, and
:data:`IGNORED` (1) marks entries whose completion nobody waits for (cancel requests,
fire-and-forget closes).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import threading
from collections.abc import Callable
from typing import Any, Final

from ._import import liburing_import_lock

with liburing_import_lock():  # see _import: concurrent first imports race
    import liburing  # type: ignore[import-untyped]  # noqa: F401
from liburing import (
    io_uring,
    io_uring_cqe,
    io_uring_cqe_seen,
    io_uring_enable_rings,
    io_uring_get_sqe,
    io_uring_peek_cqe,
    io_uring_prep_accept,
    io_uring_prep_cancel64,
    io_uring_prep_close,
    io_uring_prep_connect,
    io_uring_prep_nop,
    io_uring_prep_poll_add,
    io_uring_prep_recv,
    io_uring_prep_send,
    io_uring_prep_timeout,
    io_uring_put_sqe,
    io_uring_queue_exit,
    io_uring_queue_init,
    io_uring_sq_ready,
    io_uring_sqe,
    io_uring_submit,
    sockaddr,
    timespec,
)

from ._probe import UringUnavailable, explain_setup_errno

#: The liburing call of the proactor's hottest path (re-arming a transport's receive,
#: :meth:`UringProactor.recv_again`): it copies an entry made by :meth:`Ring.recv_copy`
#: into the submission queue. ``put_sqe(raw, copy)`` with ``raw = Ring.raw`` (never
#: ``None``: the binding would crash) returns ``False`` when the queue is full.
put_sqe: Final = io_uring_put_sqe

__all__ = [
    "DEFAULT_ENTRIES",
    "IGNORED",
    "Ring",
    "Sqe",
    "make_sockaddr",
    "make_timespec",
    "os_error",
]

#: Submission queue size; the completion queue is twice as large. 1024 SQEs cost ~100 KiB.
DEFAULT_ENTRIES: Final = 1024
#: ``user_data`` for entries whose completions are dropped on arrival.
IGNORED: Final = 1

# io_uring_setup flags (include/uapi/linux/io_uring.h; the binding exposes them only as
# enum members of its private modules).
_SETUP_R_DISABLED: Final = 1 << 6
_SETUP_COOP_TASKRUN: Final = 1 << 8
_SETUP_TASKRUN_FLAG: Final = 1 << 9
_SETUP_SINGLE_ISSUER: Final = 1 << 12
_SETUP_DEFER_TASKRUN: Final = 1 << 13

#: How completions reach the thread, cheapest first; :class:`Ring` takes the first the
#: kernel accepts. By default the kernel interrupts the running thread (task work with
#: a signal-like IPI) for every completion; measured here that costs ~5 µs of system
#: time per completion. ``coop`` (Linux 5.19+) lets completions wait for the thread's
#: next syscall; ``defer`` (6.1+) runs them only when the loop asks, in one batch.
MODES: Final = ("defer", "coop", "plain")
#: Environment variable that pins the mode (for comparisons and odd kernels).
MODE_SWITCH: Final = "AIODUCT_URING_MODE"
_MODE_FLAGS: Final = {
    "defer": _SETUP_SINGLE_ISSUER | _SETUP_DEFER_TASKRUN | _SETUP_TASKRUN_FLAG | _SETUP_R_DISABLED,
    "coop": _SETUP_COOP_TASKRUN | _SETUP_TASKRUN_FLAG,
    "plain": 0,
}

# io_uring_enter(2), called through ctypes: a foreign call releases the GIL while the
# thread sleeps, which the binding's own waits do not. The number is the same on every
# architecture (system calls from 424 on share one table).
_SYS_IO_URING_ENTER: Final = 426
_ENTER_GETEVENTS: Final = 1 << 0
_ENTER_EXT_ARG: Final = 1 << 3
_syscall = ctypes.CDLL(None, use_errno=True).syscall
_syscall.restype = ctypes.c_long


class _KernelTimespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64))


class _GetEventsArg(ctypes.Structure):
    """``struct io_uring_getevents_arg``: no signal mask, an optional relative timeout."""

    _fields_ = (
        ("sigmask", ctypes.c_uint64),
        ("sigmask_sz", ctypes.c_uint32),
        ("min_wait_usec", ctypes.c_uint32),
        ("ts", ctypes.c_uint64),
    )


#: An SQE handle from the binding (opaque outside this module).
Sqe = object
#: A pinned ``struct sockaddr`` from the binding (opaque outside this module).
SockAddr = object
#: A pinned ``struct __kernel_timespec`` from the binding (opaque outside this module).
TimeSpec = object


def os_error(res: int) -> OSError:
    """The exception for a negative CQE result (``OSError`` picks the subclass by errno)."""
    return OSError(-res, os.strerror(-res))


def make_sockaddr(family: int, address: object) -> SockAddr:
    """A kernel socket address for ``connect`` from a Python address tuple or path.

    The binding parses numeric addresses only (``inet_pton``); host names must be resolved
    first -- :meth:`UringEventLoop.sock_connect` does that like every asyncio loop.
    """
    if family == socket.AF_INET:
        host, port = _host_port(address)
        return _checked(sockaddr, socket.AF_INET, host, port, 0)
    if family == socket.AF_INET6:
        host, port = _host_port(address)
        scope = 0
        if isinstance(address, tuple) and len(address) == 4:
            scope = int(address[3])
        host, _, zone = host.partition("%")
        if zone and not scope:
            scope = socket.if_nametoindex(zone)
        return _checked(sockaddr, socket.AF_INET6, host, port, scope)
    if family == socket.AF_UNIX:
        path = os.fsencode(address) if isinstance(address, str | bytes) else b""
        if not path or path.startswith(b"\0"):
            raise ValueError(
                f"io_uring connect supports filesystem AF_UNIX paths only, got {address!r}"
            )
        return sockaddr(socket.AF_UNIX, path)
    raise ValueError(f"io_uring connect does not support address family {family!r}")


def _host_port(address: object) -> tuple[str, int]:
    if not (isinstance(address, tuple) and len(address) >= 2):
        raise ValueError(f"expected a (host, port) tuple, got {address!r}")
    host, port = address[0], address[1]
    if not isinstance(host, str) or not isinstance(port, int):
        raise ValueError(f"expected a (host, port) tuple, got {address!r}")
    return host, port


def _checked(
    factory: Callable[..., object], family: int, host: str, port: int, scope: int
) -> SockAddr:
    try:
        if family == socket.AF_INET6:
            return factory(family, host.encode(), port, scope)
        return factory(family, host.encode(), port)
    except (ValueError, UnicodeError, OverflowError):
        kind = "IPv6" if family == socket.AF_INET6 else "IPv4"
        raise ValueError(
            f"io_uring connect needs a numeric {kind} address and a port, got {host!r}:{port!r}; "
            f"resolve host names first (loop.getaddrinfo / loop.sock_connect do)"
        ) from None


def make_timespec(seconds: float) -> TimeSpec:
    """A kernel timespec for :meth:`Ring.timeout`; keep it alive until the completion."""
    if seconds < 0:
        raise ValueError(f"a timeout cannot be negative, got {seconds!r}")
    return timespec(seconds)


class _NoEntry:
    """What :meth:`Ring.dispatch` finds for a completion nobody waits for."""

    __slots__ = ()
    direct = None


_NO_ENTRY: Final = _NoEntry()


class Ring:
    """One io_uring instance: prepare, submit, reap. Single-threaded by design.

    ``generation`` counts submissions that handed entries to the kernel. An entry
    prepared at generation *g* is still only in user memory while ``generation == g``;
    until then it can be rewritten into a NOP (:meth:`neutralize`) instead of cancelled,
    which is the only safe way to withdraw an entry whose file descriptor is about to be
    closed (a later ``socket()`` could reuse the number before the kernel reads it).

    A ``"defer"`` ring is created disabled and enabled by the first :meth:`submit` or
    :meth:`wait`, so the thread that runs the loop -- not the one that built it --
    becomes its only issuer; from any other thread it can be closed but not driven
    (:meth:`usable_here`).
    """

    __slots__ = (
        "_cqe",
        "_disabled",
        "_fd",
        "_issuer",
        "_ring",
        "_wait_arg",
        "_wait_ts",
        "entries",
        "generation",
        "mode",
    )

    def __init__(self, entries: int = DEFAULT_ENTRIES, mode: str | None = None) -> None:
        mode = mode or os.environ.get(MODE_SWITCH) or None
        modes = (mode,) if mode else MODES
        for index, candidate in enumerate(modes):
            if candidate not in _MODE_FLAGS:
                raise ValueError(f"unknown ring mode {candidate!r}; choose from {MODES}")
            ring = io_uring()  # a failed init leaves the object unusable: one per attempt
            try:
                io_uring_queue_init(entries, ring, _MODE_FLAGS[candidate])
            except OSError as exc:
                if exc.errno == errno.EINVAL and index + 1 < len(modes):
                    continue  # an older kernel without these setup flags: try the next mode
                raise UringUnavailable(explain_setup_errno(exc.errno or 0)) from exc
            break
        self.mode = candidate
        self._ring: object | None = ring
        self._cqe = io_uring_cqe()
        self._fd: int = ring.ring_fd
        self._disabled = candidate == "defer"
        self._issuer: int | None = None
        self._wait_ts = _KernelTimespec()
        self._wait_arg = _GetEventsArg()
        self.entries = entries
        self.generation = 0

    def fileno(self) -> int:
        """The ring's file descriptor.

        Not a wakeup source: in ``"defer"`` mode it never polls readable for pending
        completions. Sleep with :meth:`wait`.
        """
        return self._fd

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until a completion is ready to reap, ``timeout`` seconds pass, or a signal.

        The GIL is released while the thread sleeps. The kernel wakes the thread as soon
        as an operation completes, in every mode, and in ``"defer"`` mode runs the
        completions' deferred work before returning, so :meth:`reap` finds them. Returns
        ``False`` only when ``timeout`` expired first. Must be called from the thread that
        drives the ring (:meth:`usable_here`).
        """
        if self._ring is None:
            raise RuntimeError("the io_uring ring is closed")
        self._enable_here()
        arg = self._wait_arg
        if timeout is None:
            arg.ts = 0
        else:
            ts = self._wait_ts
            nanoseconds = max(0, int(timeout * 1e9))
            ts.tv_sec, ts.tv_nsec = divmod(nanoseconds, 1_000_000_000)
            arg.ts = ctypes.addressof(ts)
        res = _syscall(
            ctypes.c_long(_SYS_IO_URING_ENTER),
            ctypes.c_long(self._fd),
            ctypes.c_long(0),
            ctypes.c_long(1),
            ctypes.c_long(_ENTER_GETEVENTS | _ENTER_EXT_ARG),
            ctypes.byref(arg),
            ctypes.c_size_t(ctypes.sizeof(arg)),
        )
        if res >= 0:
            return True
        code = ctypes.get_errno()
        if code == errno.ETIME:
            return False
        if code in (errno.EINTR, errno.EAGAIN, errno.EBUSY):
            return True  # a signal, or completions to reap first: the caller looks again
        raise OSError(code, f"io_uring_enter (waiting for completions): {os.strerror(code)}")

    def usable_here(self) -> bool:
        """Whether this thread may submit and reap (a ``"defer"`` ring has one issuer)."""
        return self._issuer is None or self._issuer == threading.get_ident()

    def _enable_here(self) -> None:
        # "defer" rings have one issuer thread: the first that submits or waits (normally
        # the event loop's), not the one that happened to create the ring.
        if self._disabled:
            io_uring_enable_rings(self._ring)
            self._disabled = False
            self._issuer = threading.get_ident()

    @property
    def closed(self) -> bool:
        return self._ring is None

    def close(self) -> None:
        """Tear the ring down. The kernel cancels whatever is still in flight."""
        ring = self._ring
        if ring is not None:
            self._ring = None
            self._fd = -1
            io_uring_queue_exit(ring)

    # -- preparing entries ---------------------------------------------------------------------

    def _sqe(self) -> Sqe:
        ring = self._ring
        if ring is None:
            raise RuntimeError("the io_uring ring is closed")
        sqe = io_uring_get_sqe(ring)
        if not sqe:  # submission queue full: hand what we have to the kernel, then retry
            self.submit()
            sqe = io_uring_get_sqe(ring)
            if not sqe:
                raise self.queue_full()
        return sqe

    def queue_full(self) -> BlockingIOError:
        """The error for a submission queue that stays full after a submission."""
        return BlockingIOError(
            "the io_uring submission queue is full and the kernel accepts no more "
            f"entries; too many operations in flight for a ring of {self.entries} entries"
        )

    def _prepared(self, sqe: Sqe, user_data: int) -> Sqe:
        sqe.user_data = user_data  # type: ignore[attr-defined]
        return sqe

    def nop(self, user_data: int) -> Sqe:
        sqe = self._sqe()
        io_uring_prep_nop(sqe)
        return self._prepared(sqe, user_data)

    def neutralize(self, sqe: Sqe, user_data: int) -> None:
        """Turn a prepared, not yet submitted entry into a NOP completing as ``user_data``."""
        io_uring_prep_nop(sqe)
        sqe.user_data = user_data  # type: ignore[attr-defined]

    def recv(self, user_data: int, fd: int, buf: memoryview, flags: int = 0) -> Sqe:
        """Receive up to ``len(buf)`` bytes into ``buf`` (writable, non-empty, pinned)."""
        # The hottest entry point: written out instead of going through the helpers.
        ring = self._ring
        sqe = io_uring_get_sqe(ring) if ring is not None else None
        if not sqe:
            sqe = self._sqe()
        try:
            io_uring_prep_recv(sqe, fd, buf, len(buf), flags)
        except BaseException:
            self.neutralize(sqe, IGNORED)
            raise
        sqe.user_data = user_data  # type: ignore[union-attr]
        return sqe

    def recv_copy(self, user_data: int, fd: int, buf: memoryview, flags: int = 0) -> Sqe:
        """A receive entry like :meth:`recv`'s, in memory of its own instead of the queue.

        Put into the queue with :data:`put_sqe` -- as often as needed: the same receive
        into the same buffer is the same 64 bytes every time, and copying them costs a
        tenth of preparing them (a new entry object, the buffer's validation). The
        caller keeps ``buf`` alive and unresized while the copy may still be put. An
        entry put this way cannot be :meth:`neutralize`-d (nothing refers to its slot).
        """
        sqe = io_uring_sqe(1)
        io_uring_prep_recv(sqe, fd, buf, len(buf), flags)
        sqe.user_data = user_data
        return sqe

    @property
    def raw(self) -> object | None:
        """The binding's ring object (for :data:`put_sqe`); ``None`` once closed."""
        return self._ring

    def send(self, user_data: int, fd: int, buf: memoryview, flags: int = 0) -> Sqe:
        """Send ``buf`` (non-empty, pinned); the completion says how many bytes went."""
        sqe = self._sqe()
        try:
            io_uring_prep_send(sqe, fd, buf, len(buf), flags)
        except BaseException:
            self.neutralize(sqe, IGNORED)
            raise
        return self._prepared(sqe, user_data)

    def connect(self, user_data: int, fd: int, addr: SockAddr) -> Sqe:
        """Connect ``fd`` to ``addr`` (from :func:`make_sockaddr`, pinned until submitted)."""
        sqe = self._sqe()
        io_uring_prep_connect(sqe, fd, addr)
        return self._prepared(sqe, user_data)

    def accept(self, user_data: int, fd: int, flags: int = 0) -> Sqe:
        """Accept a connection on listening ``fd``; the completion is the new fd."""
        sqe = self._sqe()
        io_uring_prep_accept(sqe, fd, None, flags)
        return self._prepared(sqe, user_data)

    def poll(self, user_data: int, fd: int, mask: int) -> Sqe:
        """One-shot readiness poll; the completion is the ``revents`` mask."""
        sqe = self._sqe()
        io_uring_prep_poll_add(sqe, fd, mask)
        return self._prepared(sqe, user_data)

    def timeout(self, user_data: int, ts: TimeSpec) -> Sqe:
        """Complete with ``-ETIME`` after ``ts`` (from :func:`make_timespec`, pinned)."""
        sqe = self._sqe()
        io_uring_prep_timeout(sqe, ts, 0, 0)
        return self._prepared(sqe, user_data)

    def close_fd(self, user_data: int, fd: int) -> Sqe:
        """Close ``fd`` asynchronously (the number is free once the completion arrives)."""
        sqe = self._sqe()
        io_uring_prep_close(sqe, fd)
        return self._prepared(sqe, user_data)

    def cancel(self, target: int, user_data: int = IGNORED) -> Sqe:
        """Ask the kernel to cancel the entry submitted as ``target``.

        The target still completes -- with ``-ECANCELED``, or with its real result if it
        finished first -- and its buffers stay pinned until that completion is reaped.
        """
        sqe = self._sqe()
        io_uring_prep_cancel64(sqe, target, 0)
        return self._prepared(sqe, user_data)

    # -- submitting and reaping ---------------------------------------------------------------

    def pending(self) -> int:
        """Entries prepared but not yet handed to the kernel."""
        ring = self._ring
        return 0 if ring is None else int(io_uring_sq_ready(ring))

    def submit(self) -> int:
        """Hand prepared entries to the kernel without waiting; returns how many went.

        ``EBUSY``/``EAGAIN``/``EINTR`` (completion queue backed up, or a signal) leave the
        entries queued for the next call instead of raising.
        """
        ring = self._ring
        if ring is None:
            return 0
        ready = io_uring_sq_ready(ring)
        self._enable_here()
        try:
            done = int(io_uring_submit(ring))
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            if exc.errno == errno.EBUSY:  # reap completions first, then retry
                return 0
            raise
        if ready:
            self.generation += 1
        return done

    def dispatch(
        self,
        table: dict[int, Any],
        slow: Callable[[Any, int], None],
        failed: Callable[[BaseException, Any], None],
    ) -> int:
        """:meth:`reap` with the caller's dispatch written in: the event loop's hot path.

        Each completion's ``user_data`` is popped from ``table`` (unknown ones are
        dropped); an entry whose ``direct`` attribute is a callable gets
        ``direct(res)`` right here, any other ``slow(entry, res)``. An exception from
        ``direct`` goes to ``failed(exc, entry)`` and reaping goes on. One Python call
        per completion instead of two (a handler, then the callback): on a loop that
        reaps a completion or more per request, that was a tenth of its own cost.
        """
        ring = self._ring
        if ring is None:
            return 0
        cqe = self._cqe
        count = 0
        pop = table.pop
        while io_uring_peek_cqe(ring, cqe) == 0:
            entry = pop(cqe.user_data, _NO_ENTRY)
            res = cqe.res
            io_uring_cqe_seen(ring, cqe)
            count += 1
            direct = entry.direct
            if direct is None:
                if entry is not _NO_ENTRY:  # (a cancel request's own completion, or such)
                    slow(entry, res)
                continue
            try:
                direct(res)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                failed(exc, entry)
        return count

    def reap(self, handler: Callable[[int, int], None]) -> int:
        """Call ``handler(user_data, res)`` for every ready completion; never waits."""
        ring = self._ring
        if ring is None:
            return 0
        cqe = self._cqe
        count = 0
        while io_uring_peek_cqe(ring, cqe) == 0:
            user_data = cqe.user_data
            res = cqe.res
            io_uring_cqe_seen(ring, cqe)
            count += 1
            handler(user_data, res)
        return count
