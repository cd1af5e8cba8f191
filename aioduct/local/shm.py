"""Shared memory for response bodies: a ring per worker, written there, copied out here.

Pushing a 1 MB body through the worker's socket costs the parent most of a millisecond:
the kernel copies it through a socket buffer a few dozen kilobytes at a time, the parent
wakes for each piece, joins them into a frame and decodes the frame into ``bytes``. The
parent is the one process every worker shares, so that is the cost that stops the engine
from scaling. Instead the parent creates one ``memfd`` per worker and maps it; the worker
maps the same pages, copies each large body into them and sends only ``(position,
length)`` in its Result batch. The parent copies the body out once, into the ``bytes`` the
caller gets (``result.body`` stays plain ``bytes``: ``.decode()``, hashing, ``json.loads``,
``msgspec`` encoding all work as before), and tells the worker with a ``FREE`` frame how
far it has read.

Why a ring: the parent reads Result batches in the order the worker wrote them, and
copies every body out while it decodes the batch, so space is always returned in the
order it was handed out. Returning space is then one number -- the ring position up to
which everything is read -- and allocating is two additions; there is no free list and no
fragmentation. Positions count bytes from the start and only grow; ``position % size``
is the offset in the mapping. A body never wraps around the end: it starts the next lap
instead, and the bytes skipped count as used until the parent has read past them.

Why copy out rather than hand the caller a view of the mapping: a view is not ``bytes``
(on Python 3.11 no Python type can be both), and its lifetime would be the caller's to
decide: a caller keeping every Result would fill the ring. One copy costs the parent
~60-90 µs per MB here; pushing the body through the socket cost ~900 µs.

The ring never blocks anything: a body larger than the ring, or one arriving while the
parent has not read enough of the ring to make room, travels inline in its frame like a
small body. A worker that dies takes nothing with it: the parent drops its mapping and
creates a fresh one for the replacement.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from typing import Final

__all__ = ["DEFAULT_SIZE", "DEFAULT_THRESHOLD", "ParentRegion", "Ring", "WorkerRegion"]

#: Bytes of shared memory per worker (pages are only backed once written).
DEFAULT_SIZE: Final = 32 << 20
#: Bodies from this size on go through shared memory; smaller ones are cheaper inline.
DEFAULT_THRESHOLD: Final = 16 << 10


def supported() -> bool:
    """Whether this platform has anonymous shared files (``memfd_create``, Linux)."""
    return hasattr(os, "memfd_create")


class Ring:
    """The allocator of a worker's ring: positions handed out and returned in order.

    Pure arithmetic (no memory), so its rules are tested on their own.
    """

    __slots__ = ("freed", "head", "size")

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError(f"a ring needs a positive size, not {size}")
        self.size = size
        self.head = 0
        """The next position to hand out."""
        self.freed = 0
        """Everything before this position is read by the parent."""

    @property
    def used(self) -> int:
        return self.head - self.freed

    def alloc(self, length: int) -> int | None:
        """The position of ``length`` contiguous bytes, or None if they do not fit now."""
        size = self.size
        if length > size or length <= 0:
            return None
        head = self.head
        if head == self.freed and head % size:
            # Empty: start over at offset 0, so a ring that keeps up only ever touches
            # its first pages (each page written once is memory the worker holds).
            head = self.freed = head + size - head % size
        offset = head % size
        if offset + length > size:
            head += size - offset  # never wrap a body: skip to the next lap
        if head + length - self.freed > size:
            return None
        self.head = head + length
        return head

    def free(self, position: int) -> None:
        """The parent has read everything before ``position``."""
        if position > self.head:
            raise ValueError(f"freed up to {position}, beyond the head {self.head}")
        if position > self.freed:
            self.freed = position


def _create(size: int, name: str) -> tuple[int, mmap.mmap]:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        return fd, mmap.mmap(fd, size)
    except BaseException:
        os.close(fd)
        raise


class ParentRegion:
    """The parent's side of one worker's ring: creates it, copies bodies out of it."""

    __slots__ = ("fd", "map", "read_to", "size")

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.fd, self.map = _create(size, name)
        self.read_to = 0
        """The end of the last body copied out (what the next ``FREE`` frame reports)."""

    def take(self, position: int, length: int) -> bytes:
        """A copy of the body at ``position`` (the space goes back on the next FREE)."""
        offset = position % self.size
        if offset + length > self.size or length < 0:
            raise ValueError(f"a body at {position} of {length} bytes is outside the ring")
        self.read_to = position + length
        return self.map[offset : offset + length]

    def close_fd(self) -> None:
        """The worker inherited the fd; the mapping does not need it any more."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self) -> None:
        self.close_fd()
        with contextlib.suppress(BufferError):
            self.map.close()


class WorkerRegion:
    """The worker's side of the ring: places bodies and learns what was read."""

    __slots__ = ("map", "ring", "threshold")

    def __init__(self, fd: int, size: int, threshold: int) -> None:
        try:
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.ring = Ring(size)
        self.threshold = threshold

    def put(self, body: bytes) -> int | None:
        """Copy ``body`` into the ring and return its position (None: send it inline)."""
        length = len(body)
        if length < self.threshold:
            return None
        position = self.ring.alloc(length)
        if position is None:
            return None
        offset = position % self.ring.size
        self.map[offset : offset + length] = body
        return position

    def close(self) -> None:
        with contextlib.suppress(BufferError):
            self.map.close()
