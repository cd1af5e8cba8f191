"""The runtime interface: the only things the request pipeline asks of an I/O engine.

The pipeline (:mod:`aioduct.engine`) is ordinary async code. Everything it needs from the
outside world is here: resolve a name, open a TCP stream, upgrade it to TLS, read and write
bytes with deadlines, and a clock. An engine — asyncio/uvloop today, the io_uring worker
loop of the local engine — implements these two small protocols and nothing else, so the
pipeline, pool and protocol code run unchanged on every engine.

Deadlines are absolute times on :meth:`Runtime.now`'s clock. A stream operation whose
deadline passes raises :class:`Expired`; the caller knows which limit that was (read,
write, total) and raises the matching public error.
"""

from __future__ import annotations

import ssl
from collections.abc import Coroutine
from typing import Any, Protocol

__all__ = ["Expired", "Runtime", "Stream", "default_runtime", "unique_addresses"]


class Expired(Exception):
    """A stream operation's deadline passed (internal; mapped to a public TimeoutError)."""


class Stream(Protocol):
    """A connected byte stream (TCP, possibly with TLS).

    A stream may offer more, which :class:`~aioduct.connection.HTTP11Connection` uses
    when present: ``read_into(view, deadline_fn)`` and ``take_buffered(count)`` (a body
    of known length received into one buffer; see :mod:`aioduct.bodybuffers`).
    """

    writing_paused: bool
    """True while queued bytes are above the high-water mark: call :meth:`drain`."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue bytes for sending; never blocks (see :meth:`drain`)."""

    async def drain(self, deadline: float | None) -> None:
        """Wait until queued bytes are below the high-water mark (or raise if closed)."""

    async def read(self, deadline: float | None) -> bytes:
        """The bytes received so far (waiting for some); ``b""`` once the peer closed."""

    async def read_head(self, deadline: float | None) -> bytes:
        """The first read of a response: :meth:`read`, or of a large amount only the
        first part (the rest stays buffered for a body read in one piece)."""

    def is_reusable(self) -> bool:
        """Open, no EOF seen, and no unsolicited bytes waiting: safe to send a new request."""

    def close(self) -> None:
        """Close now, discarding unsent bytes."""

    @property
    def alpn_protocol(self) -> str | None:
        """The protocol the TLS peer selected by ALPN, if any."""

    @property
    def ssl_object(self) -> ssl.SSLObject | ssl.SSLSocket | None:
        """The TLS session, for certificate inspection."""

    @property
    def peer_address(self) -> tuple[str, int] | None: ...


class Datagrams(Protocol):
    """A connected UDP socket: what QUIC (HTTP/3) moves its packets through.

    ``send`` never blocks (a datagram the kernel cannot queue is dropped, as the network
    would); ``recv`` returns every datagram that has arrived, waiting for at least one
    until ``deadline`` (:class:`Expired`), or an empty list once :meth:`wake` is called.
    """

    def send(self, data: bytes) -> None: ...

    async def recv(self, deadline: float | None) -> list[bytes]: ...

    def wake(self) -> None:
        """Make a pending (or the next) :meth:`recv` return now, with what it has."""

    def close(self) -> None: ...

    @property
    def peer_address(self) -> tuple[str, int]: ...


class Runtime(Protocol):
    """An I/O engine the pipeline can run on."""

    name: str
    background: bool
    """Whether it runs background tasks and concurrent waits (an event loop does; the
    blocking runtime runs one request at a time in the calling thread and does not)."""

    def now(self) -> float:
        """Monotonic time in seconds, the clock deadlines are measured on."""

    async def sleep(self, seconds: float) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` in the background; the result has ``cancel()``."""

    async def resolve(self, host: str, port: int) -> list[tuple[int, str]]:
        """Addresses of ``host`` as ``(family, ip)`` pairs, preferred first."""

    async def open_tcp(
        self,
        ip: str,
        port: int,
        *,
        deadline: float | None,
        local_address: str | None = None,
        keepalive: float | None = None,
    ) -> Stream:
        """Connect to ``ip:port``. Raises OSError on failure, :class:`Expired` on deadline."""

    async def start_tls(
        self,
        stream: Stream,
        context: ssl.SSLContext,
        server_hostname: str | None,
        *,
        deadline: float | None,
        session: ssl.SSLSession | None = None,
    ) -> Stream:
        """Run a TLS handshake over ``stream`` and return the encrypted stream.

        ``session`` (from the same ``context``) is offered for resumption; whether the
        server took it is ``ssl_object.session_reused`` of the result.
        """

    async def open_udp(self, ip: str, port: int, *, local_address: str | None = None) -> Datagrams:
        """A UDP socket connected to ``ip:port`` (ICMP errors surface from ``recv``)."""


def unique_addresses(infos: list[tuple[Any, ...]]) -> list[tuple[int, str]]:
    """``(family, ip)`` pairs from ``getaddrinfo`` results, first occurrence first."""
    seen: dict[tuple[int, str], None] = {}
    for family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault((int(family), str(sockaddr[0])), None)
    return list(seen)


def default_runtime() -> Runtime:
    """The runtime for the running loop: io_uring on a UringEventLoop, else asyncio/uvloop."""
    import asyncio
    import sys

    loop = asyncio.get_running_loop()
    # The uring loop module is imported iff such a loop can exist; never import it here.
    uring_loop = sys.modules.get("aioduct.uring.loop")
    if uring_loop is not None and isinstance(loop, uring_loop.UringEventLoop):
        from .uring import UringRuntime

        return UringRuntime(loop)
    from .asyncio import AsyncioRuntime

    return AsyncioRuntime(loop)
