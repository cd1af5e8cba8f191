"""Where a large Content-Length body is received: one buffer sized for it.

Read as it arrives, a body becomes a ``bytes`` object per receive, slices of those and a
join at the end -- every byte copied two or three times after the kernel's copy. When the
response announces its length and the stream can receive into a caller's buffer
(:meth:`~aioduct.runtimes.asyncio.AsyncioStream.read_into`: the plain streams of the
asyncio, uvloop and io_uring loops), :class:`~aioduct.connection.HTTP11Connection` takes
a buffer of exactly that length from a :class:`BodyBuffers`, the loop receives the body
straight into it, and :meth:`BodyBuffers.finish` makes the ``bytes`` the Response keeps:
one copy.

:class:`BodyBuffers` keeps a few freed buffers for the next bodies (``bytearray(n)``
zero-fills its memory, which costs half a copy). A local-engine worker receives the body
into its shared-memory ring instead (:class:`aioduct.local.shm.RingBodyBuffers`), where
the parent reads it: the Response still gets its ``bytes`` (the one copy), but the body
is not copied again to reach the parent.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DIRECT_MAX", "DIRECT_MIN", "BodyBuffers"]

#: Bodies from this size on are received into a buffer of their own; smaller ones mostly
#: arrive with their head, where taking them from the codec costs one copy too.
DIRECT_MIN: Final = 64 << 10
#: Larger Content-Length values are not trusted with a buffer before the bytes arrive
#: (a server announcing gigabytes would get them reserved): those bodies are read as
#: they arrive, holding only what came.
DIRECT_MAX: Final = 64 << 20
#: Freed buffers kept: at most this many, each at most _KEEP_SIZE bytes.
_KEEP: Final = 4
_KEEP_SIZE: Final = 4 << 20


class BodyBuffers:
    """Buffers for bodies of known length: handed out by :meth:`take`, returned by
    :meth:`finish` (the body as ``bytes``) or :meth:`abandon` (a failed body)."""

    __slots__ = ("_spare",)

    def __init__(self) -> None:
        self._spare: list[bytearray] = []

    def take(self, length: int) -> memoryview:
        """A writable buffer of exactly ``length`` bytes (``DIRECT_MIN <= length``)."""
        spare = self._spare
        for i in range(len(spare) - 1, -1, -1):
            if len(spare[i]) >= length:
                return memoryview(spare.pop(i))[:length]
        return memoryview(bytearray(length))

    def finish(self, view: memoryview) -> bytes:
        """The received body as ``bytes``; ``view`` goes back to the pool."""
        body = view.tobytes()
        self.abandon(view)
        return body

    def abandon(self, view: memoryview) -> None:
        """Give back a buffer whose body failed (or was copied out)."""
        buf = view.obj
        if type(buf) is bytearray and len(buf) <= _KEEP_SIZE and len(self._spare) < _KEEP:
            self._spare.append(buf)
