"""The blocking runtime: the pipeline on plain sockets, driven without an event loop.

The request pipeline is ``async def`` code that awaits nothing but the runtime's
operations. Here every operation completes before it returns -- ``read`` is a ``recv``
with a socket timeout, ``open_tcp`` a ``connect``, ``start_tls`` a blocking handshake --
so a pipeline coroutine never suspends, and :func:`run_sync` drives one to its result
with a single ``send(None)``: no loop, no thread hop, no futures. That is how
:class:`~aioduct.BlockingClient` runs the same pipeline as :class:`~aioduct.Client`.

Deadlines are absolute ``time.monotonic()`` values, as on the other runtimes; a wait that
reaches one raises :class:`~aioduct.runtimes.Expired`.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, NoReturn, TypeVar

from ..protocol.tls import MAX_RECORD_PLAINTEXT, Bytes, TLSLayer
from . import Expired, unique_addresses
from .udp import drain, open_socket

__all__ = ["BlockingRuntime", "BlockingStream", "run_sync"]

T = TypeVar("T")

_RECV_SIZE: Final = 256 * 1024
#: What the first read of a response takes at most: the head, and a small body with it.
#: A larger body stays in the kernel for read_into, which receives it into its buffer;
#: and a 64 KiB ``bytes`` comes from the heap, where glibc puts a 256 KiB one into a
#: fresh mapping (mmap, page faults, munmap) on every read.
_HEAD_READ: Final = 64 * 1024


def run_sync(awaitable: Awaitable[T]) -> T:
    """Run a pipeline coroutine on the blocking runtime to its end, in this thread."""
    steps = awaitable.__await__()
    try:
        suspended = next(steps)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    close = getattr(steps, "close", None)
    if close is not None:
        close()
    raise RuntimeError(
        f"a blocking-runtime coroutine suspended on {suspended!r}: some step of the "
        "pipeline waited for an event loop, which the blocking client does not run"
    )


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise Expired()
    return left


_PEEK: Final = socket.MSG_PEEK | socket.MSG_DONTWAIT
#: Linux only; elsewhere quick_ack() does nothing.
_TCP_QUICKACK: Final[int | None] = getattr(socket, "TCP_QUICKACK", None)
#: A kernel timeout (SO_RCVTIMEO/SO_SNDTIMEO) is reset when the time left differs from
#: it by more than this: shorter waits retry, longer ones never overshoot by more.
_SLACK: Final = 0.005
_TIMEVAL: Final = struct.Struct("@ll")


class _KernelTimeout:
    """One socket option (SO_RCVTIMEO or SO_SNDTIMEO), set only when it must change.

    Python's own socket timeouts switch the socket to non-blocking mode and ``poll`` before
    every ``recv``/``send`` (an ``ioctl``, a failed ``recv``, a ``poll`` and the ``recv``
    again for one read). The socket stays blocking here; the kernel's timeout bounds each
    call, and with a steady ``read_timeout`` it is set once per connection.
    """

    __slots__ = ("_option", "_value")

    def __init__(self, option: int) -> None:
        self._option = option
        self._value = 0.0  # 0: no timeout (block)

    def arm(self, sock: socket.socket, deadline: float | None) -> None:
        if deadline is None:
            wanted = 0.0
        else:
            wanted = deadline - time.monotonic()
            if wanted <= 0:
                raise Expired()
        current = self._value
        if current == wanted or (
            wanted and current and current - _SLACK <= wanted <= 1.5 * current
        ):
            # Close enough: the wait ends at most _SLACK after the deadline, or early --
            # which only means another wait with the time then left.
            return
        seconds = int(wanted)
        micros = max(1, int((wanted - seconds) * 1e6)) if wanted else 0
        sock.setsockopt(socket.SOL_SOCKET, self._option, _TIMEVAL.pack(seconds, micros))
        self._value = wanted


class BlockingStream:
    """A connected socket with the runtime Stream API; TLS through the shared TLSLayer.

    ``write`` only queues; the bytes go out with ``drain`` or before the next ``read``,
    so a request head and a small body still leave in one ``send``. Over TLS the socket
    carries ciphertext and :class:`~aioduct.protocol.tls.TLSLayer` -- the same sans-I/O
    layer the asyncio and io_uring runtimes use -- encrypts and decrypts: one TLS
    implementation for every driver.
    """

    __slots__ = (
        "_buffer",
        "_closed",
        "_eof",
        "_out",
        "_recv_timeout",
        "_send_timeout",
        "_sock",
        "_tls",
        "writing_paused",
    )

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(None)  # blocking; deadlines are kernel timeouts (_KernelTimeout)
        self._sock = sock
        self._out: list[bytes | bytearray | memoryview] = []
        self._eof = False
        self._closed = False
        self._recv_timeout = _KernelTimeout(socket.SO_RCVTIMEO)
        self._send_timeout = _KernelTimeout(socket.SO_SNDTIMEO)
        self._tls: TLSLayer | None = None
        self._buffer: bytearray | None = None  # plaintext out of the TLS layer
        self.writing_paused = False

    # -- the socket --------------------------------------------------------------------------

    def _send_raw(self, data: Bytes, deadline: float | None) -> None:
        view = memoryview(data)
        sock = self._sock
        while view:
            self._send_timeout.arm(sock, deadline)
            try:
                sent = sock.send(view)
            except BlockingIOError:
                continue  # the kernel timeout ticked: re-check the deadline
            view = view[sent:]

    def _recv_raw(self, deadline: float | None, size: int = _RECV_SIZE) -> bytes:
        sock = self._sock
        while True:
            self._recv_timeout.arm(sock, deadline)
            try:
                return sock.recv(size)
            except BlockingIOError:
                continue  # the kernel timeout ticked: re-check the deadline

    def _recv_raw_into(self, view: memoryview, deadline: float | None) -> int:
        """Receive into ``view`` until it is full (``MSG_WAITALL``), the peer closes or
        the kernel timeout ticks after some bytes arrived; how many arrived."""
        sock = self._sock
        while True:
            self._recv_timeout.arm(sock, deadline)
            try:
                return sock.recv_into(view, 0, socket.MSG_WAITALL)
            except BlockingIOError:
                continue  # nothing before the kernel timeout: re-check the deadline

    # -- TLS ---------------------------------------------------------------------------------

    def _handshake(self, tls: TLSLayer, deadline: float | None) -> None:
        """Run ``tls``'s handshake over the socket; afterwards the stream speaks TLS."""
        while True:
            try:
                done = tls.do_handshake()
            except ssl.SSLError:
                with contextlib.suppress(OSError, Expired):  # the alert, best effort
                    self._send_raw(tls.data_to_send(), deadline)
                raise
            out = tls.data_to_send()
            if out:
                self._send_raw(out, deadline)
            if done:
                break
            tls.receive_data(self._recv_raw(deadline))
        self._tls = tls
        self._buffer = bytearray(MAX_RECORD_PLAINTEXT * 4)

    def _read_tls(self, tls: TLSLayer, deadline: float | None) -> bytes:
        buffer = self._buffer
        assert buffer is not None
        view = memoryview(buffer)
        return bytes(view[: self._read_tls_into(tls, view, deadline)])

    def _read_tls_into(self, tls: TLSLayer, view: memoryview, deadline: float | None) -> int:
        """Plaintext decrypted straight into ``view``: how much (0 once the peer closed)."""
        data: bytes | None = None  # ciphertext to hand over first, if any
        while True:
            if data is None and not tls.pending_plaintext():
                data = self._recv_raw(deadline)
            n = tls.read_into(view, data)
            data = None
            if tls.bytes_to_send:  # e.g. a key update's answer
                self._send_raw(tls.data_to_send(), deadline)
            if n:
                return n
            if tls.closed:
                return 0

    # -- Stream API --------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise ConnectionResetError("connection is closed")
        self._out.append(data)

    def _flush(self, deadline: float | None) -> None:
        out = self._out
        if not out:
            return
        data: Bytes = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        if self._tls is not None:
            data = self._tls.encrypt(data)
        self._send_raw(data, deadline)

    async def drain(self, deadline: float | None) -> None:
        self._flush(deadline)

    async def read(self, deadline: float | None, size: int = _RECV_SIZE) -> bytes:
        """Received bytes, at most ``size`` of plain TCP (TLS: one decrypted read)."""
        if self._out:
            self._flush(deadline)
        if self._eof:
            return b""
        tls = self._tls
        data = self._recv_raw(deadline, size) if tls is None else self._read_tls(tls, deadline)
        if not data:
            self._eof = True
        return data

    def read_head(self, deadline: float | None) -> Coroutine[Any, Any, bytes]:
        """The first read of a response: at most ``_HEAD_READ`` bytes of plain TCP, so
        the rest of a large body is left to :meth:`read_into`."""
        return self.read(deadline, _HEAD_READ)

    async def read_into(self, view: memoryview, deadline: Callable[[], float | None]) -> int:
        """Fill ``view`` with the next ``len(view)`` bytes; fewer only if the peer closed.

        Plain TCP receives straight into ``view``, all of it in one blocking
        ``recv_into`` when the bytes keep coming; TLS decrypts records straight into
        it. ``deadline()`` is asked again after every receive that brought something,
        so a read timeout limits silence, not the whole body (as on the event loops).
        """
        if self._out:
            self._flush(deadline())
        want = len(view)
        got = 0
        tls = self._tls
        while got < want and not self._eof:
            rest = view[got:]
            n = (
                self._recv_raw_into(rest, deadline())
                if tls is None
                else self._read_tls_into(tls, rest, deadline())
            )
            if not n:
                self._eof = True
            got += n
        return got

    def take_buffered(self, count: int) -> memoryview | None:
        """Nothing is buffered here (unread bytes stay in the kernel or the TLS layer):
        only a request for none is met."""
        return memoryview(b"") if count == 0 else None

    def quick_ack(self) -> None:
        """Acknowledge what was received now (TCP_QUICKACK, Linux): see
        :meth:`aioduct.runtimes.asyncio.AsyncioStream.quick_ack` -- without it an HTTP/2
        body from a server that corks its output waits ~40 ms for a delayed ACK."""
        if _TCP_QUICKACK is not None:
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)

    def is_reusable(self) -> bool:
        """Open, no EOF, and nothing waiting to be read (checked without blocking)."""
        if self._closed or self._eof:
            return False
        sock = self._sock
        try:
            pending = sock.recv(_RECV_SIZE if self._tls is not None else 1, _PEEK)
        except BlockingIOError:
            return True  # nothing there: the common case
        except OSError:
            return False
        tls = self._tls
        if not pending or tls is None:
            return False  # EOF, or bytes nobody asked for
        # Under TLS they may be records without data (TLS 1.3 session tickets): take
        # them in; only plaintext or the end makes the connection unusable.
        try:
            data = sock.recv(len(pending), socket.MSG_DONTWAIT)
            assert self._buffer is not None
            plaintext = tls.read_into(memoryview(self._buffer), data)
        except (OSError, ssl.SSLError):
            return False
        return not plaintext and not tls.closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._out.clear()
        tls = self._tls
        if tls is not None and not tls.closed:
            with contextlib.suppress(OSError, ssl.SSLError):
                self._sock.send(tls.close(), socket.MSG_DONTWAIT)  # close_notify, best effort
        with contextlib.suppress(OSError):
            self._sock.close()

    @property
    def alpn_protocol(self) -> str | None:
        tls = self._tls
        return tls.ssl_object.selected_alpn_protocol() if tls is not None else None

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        tls = self._tls
        return tls.ssl_object if tls is not None else None

    @property
    def peer_address(self) -> tuple[str, int] | None:
        try:
            peer = self._sock.getpeername()
        except OSError:
            return None
        return (peer[0], peer[1])


class BlockingDatagrams:
    """A connected UDP socket for the blocking runtime: ``recv`` waits in ``poll``.

    There is never a concurrent waiter to wake here (the request waiting for its
    stream reads, and computes QUIC's next timer before each wait), so ``wake`` is a
    no-op.
    """

    __slots__ = ("_gro", "_peer", "_sock")

    def __init__(self, sock: socket.socket, peer: tuple[str, int], gro: int = 0) -> None:
        self._sock = sock
        self._peer = peer
        self._gro = gro

    def send(self, data: bytes) -> None:
        try:
            self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            pass  # the kernel's queue is full: dropped, as a network would; QUIC resends

    async def recv(self, deadline: float | None) -> list[bytes]:
        import select

        sock = self._sock
        out: list[bytes] = []
        while True:
            self._gro = drain(sock, out, self._gro)
            if out:
                return out
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                raise Expired()
            readable, _, _ = select.select([sock], [], [], timeout)
            if not readable:
                raise Expired()

    def wake(self) -> None:
        return None

    def close(self) -> None:
        self._sock.close()

    @property
    def peer_address(self) -> tuple[str, int]:
        return self._peer


class BlockingRuntime:
    """Runs the pipeline in the calling thread (see the module docstring)."""

    __slots__ = ()

    name: str = "blocking"
    #: No background tasks: the pool expires idle connections when it looks at them,
    #: and HTTP/2 connections are read by the request waiting for them.
    background: bool = False
    now: Callable[[], float] = staticmethod(time.monotonic)

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)  # noqa: ASYNC251 (this runtime blocks by design)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> NoReturn:
        coro.close()
        raise RuntimeError("the blocking runtime runs no background tasks")

    async def resolve(self, host: str, port: int) -> list[tuple[int, str]]:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return unique_addresses(infos)

    async def open_tcp(
        self,
        ip: str,
        port: int,
        *,
        deadline: float | None,
        local_address: str | None = None,
        keepalive: float | None = None,
    ) -> BlockingStream:
        source = (local_address, 0) if local_address else None
        try:
            sock = socket.create_connection((ip, port), _remaining(deadline), source)
        except TimeoutError:
            raise Expired() from None
        except OSError as exc:
            if exc.errno == errno.ETIMEDOUT and deadline is not None:
                raise Expired() from None
            raise
        return self.adopt_socket(sock, keepalive=keepalive)

    def adopt_socket(
        self, sock: socket.socket, *, keepalive: float | None = None
    ) -> BlockingStream:
        """A stream over a connected socket (the winner of a happy eyeballs race,
        :func:`aioduct.eyeballs.race_sockets`)."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if keepalive is not None:
            from .asyncio import _set_keepalive

            _set_keepalive(sock, keepalive)
        return BlockingStream(sock)

    async def open_udp(
        self, ip: str, port: int, *, local_address: str | None = None
    ) -> BlockingDatagrams:
        sock, gro = open_socket(ip, port, local_address)
        return BlockingDatagrams(sock, (ip, port), gro)

    async def start_tls(
        self,
        stream: Any,
        context: ssl.SSLContext,
        server_hostname: str | None,
        *,
        deadline: float | None,
        session: ssl.SSLSession | None = None,
    ) -> BlockingStream:
        assert isinstance(stream, BlockingStream)
        try:
            tls = TLSLayer(context, server_hostname=server_hostname, session=session)
            stream._handshake(tls, deadline)
        except BaseException:
            stream.close()
            raise
        return stream
