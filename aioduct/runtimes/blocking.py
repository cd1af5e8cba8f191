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

from . import Expired, unique_addresses

__all__ = ["BlockingRuntime", "BlockingStream", "run_sync"]

T = TypeVar("T")

_RECV_SIZE: Final = 256 * 1024


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
    """A connected socket (plain or TLS) with the runtime Stream API.

    ``write`` only queues; the bytes go out with ``drain`` or before the next ``read``,
    so a request head and a small body still leave in one ``send``.
    """

    __slots__ = (
        "_closed",
        "_eof",
        "_out",
        "_recv_timeout",
        "_send_timeout",
        "_sock",
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
        self.writing_paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise ConnectionResetError("connection is closed")
        self._out.append(data)

    def _flush(self, deadline: float | None) -> None:
        out = self._out
        if not out:
            return
        data = memoryview(out[0] if len(out) == 1 else b"".join(out))
        out.clear()
        sock = self._sock
        while data:
            self._send_timeout.arm(sock, deadline)
            try:
                sent = sock.send(data)
            except (BlockingIOError, ssl.SSLWantWriteError):
                continue  # the kernel timeout ticked: re-check the deadline
            data = data[sent:]

    async def drain(self, deadline: float | None) -> None:
        self._flush(deadline)

    async def read(self, deadline: float | None) -> bytes:
        if self._out:
            self._flush(deadline)
        if self._eof:
            return b""
        sock = self._sock
        while True:
            self._recv_timeout.arm(sock, deadline)
            try:
                data = sock.recv(_RECV_SIZE)
                break
            except (BlockingIOError, ssl.SSLWantReadError):
                continue  # the kernel timeout ticked (or a TLS record without data)
            except ssl.SSLZeroReturnError:
                data = b""
                break
        if not data:
            self._eof = True
        return data

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
            # The raw TCP bytes, under any TLS: nothing there is the common case.
            pending = socket.socket.recv(sock, 1, _PEEK)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not pending or not isinstance(sock, ssl.SSLSocket):
            return False  # EOF, or bytes nobody asked for
        # Under TLS they may be a record without data (a TLS 1.3 session ticket).
        sock.setblocking(False)
        try:
            sock.recv(1)  # data nobody asked for, or b"" at EOF
        except ssl.SSLWantReadError:
            return True
        except (OSError, ssl.SSLError):
            return False
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(None)
        return False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.clear()
            with contextlib.suppress(OSError):
                self._sock.close()

    @property
    def alpn_protocol(self) -> str | None:
        sock = self._sock
        return sock.selected_alpn_protocol() if isinstance(sock, ssl.SSLSocket) else None

    @property
    def ssl_object(self) -> ssl.SSLSocket | None:
        sock = self._sock
        return sock if isinstance(sock, ssl.SSLSocket) else None

    @property
    def peer_address(self) -> tuple[str, int] | None:
        try:
            peer = self._sock.getpeername()
        except OSError:
            return None
        return (peer[0], peer[1])


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
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if keepalive is not None:
            from .asyncio import _set_keepalive

            _set_keepalive(sock, keepalive)
        return BlockingStream(sock)

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
        sock = stream._sock
        try:
            sock.settimeout(_remaining(deadline))
            tls = context.wrap_socket(sock, server_hostname=server_hostname, session=session)
        except TimeoutError:
            stream.close()
            raise Expired() from None
        except BaseException:
            stream.close()
            raise
        return BlockingStream(tls)
