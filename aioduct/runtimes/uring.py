"""The io_uring runtime: aioduct's asyncio runtime on a :class:`UringEventLoop`.

:class:`~aioduct.uring.loop.UringEventLoop` is a full asyncio loop (CPython's proactor
loop over io_uring completions), so the asyncio runtime's streams -- a
``BufferedProtocol`` fed by ``recv_into`` completions, TLS through the sans-I/O
:class:`~aioduct.protocol.tls.TLSLayer` inside that same protocol -- work on it as they
are; TCP_NODELAY is set by the proactor transport, SO_KEEPALIVE by ``open_tcp``. What
differs is the name (timings, logs and tests report ``"uring"``) and one guarantee: name
resolution runs ``getaddrinfo`` on the default executor, which on this loop is never
frozen by the ring waiting (the loop sleeps in ``io_uring_enter`` called through
``ctypes``, which releases the GIL).
"""

from __future__ import annotations

import asyncio

from .asyncio import AsyncioRuntime

__all__ = ["UringRuntime"]


class UringRuntime(AsyncioRuntime):
    """Runs the pipeline on the running :class:`~aioduct.uring.loop.UringEventLoop`."""

    __slots__ = ()

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(loop)
        self.name = "uring"
