"""Shared memory for response bodies: a ring per worker, written there, copied out here.

Pushing a 1 MB body through the worker's socket costs the parent most of a millisecond:
the kernel copies it through a socket buffer a few dozen kilobytes at a time, the parent
wakes for each piece, joins them into a frame and decodes the frame into ``bytes``. The
parent is the one process every worker shares, so that is the cost that stops the engine
from scaling. Instead the parent creates one ``memfd`` per worker and maps it; the worker
maps the same pages, puts each large body there and sends only ``(position, length)`` in
its Result batch. The parent copies the body out once, into the ``bytes`` the caller gets
(``result.body`` stays plain ``bytes``: ``.decode()``, hashing, ``json.loads``,
``msgspec`` encoding all work as before), and tells the worker with a ``FREE`` frame how
many bodies it has read.

How a body gets there: an HTTP/1.1 body with a Content-Length of 64 KiB to 64 MiB is
*received* into the ring (:class:`RingBodyBuffers`, the worker's
:class:`~aioduct.bodybuffers.BodyBuffers`): the connection takes a span of its length
when the head has arrived and the loop receives into it. The Response still gets its own
``bytes`` (one copy out of the span: layers and ``process=`` functions see an ordinary
body), and when that body becomes the job's Result body the worker sends the span's
position instead of copying it again. Any other body of at least the threshold (chunked,
TLS, HTTP/2, decoded, smaller) is copied in when its Result is sent (:meth:`WorkerRegion.put`).

Why spans come back out of order, and what that asks of the allocator: bodies received
at the same time finish in any order, and a span is released when the parent has read
it, or at once when its body failed (reset, truncated, timed out) or did not become its
job's Result body (a decoded one, for instance). A ring that reclaims space in order
would let one slowly received body hold back all the space handed out after it, and the
region would fill behind it; so the allocator (:class:`Ring`, a ring no more) is first
fit over a short list of free extents, merged as spans come back. The parent reads
bodies in the order they were sent, so a ``FREE`` frame is one number: bodies read so far.

Why copy out rather than hand the caller a view of the mapping: a view is not ``bytes``
(on Python 3.11 no Python type can be both), and its lifetime would be the caller's to
decide: a caller keeping every Result would fill the ring. One copy costs the parent
~60-90 µs per MB here; pushing the body through the socket cost ~900 µs.

The ring never blocks anything: a body larger than the ring, or one arriving while the
ring has no room, is received into an ordinary buffer and travels inline in its frame
like a small body. A worker that dies takes nothing with it: the parent drops its mapping
and creates a fresh one for the replacement.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import mmap
import os
from collections import deque
from typing import Final

from ..bodybuffers import BodyBuffers

__all__ = ["DEFAULT_SIZE", "DEFAULT_THRESHOLD", "ParentRegion", "Ring", "WorkerRegion"]

#: Bytes of shared memory per worker (pages are only backed once written).
DEFAULT_SIZE: Final = 32 << 20
#: Bodies from this size on go through shared memory; smaller ones are cheaper inline.
DEFAULT_THRESHOLD: Final = 16 << 10


def supported() -> bool:
    """Whether this platform has anonymous shared files (``memfd_create``, Linux)."""
    return hasattr(os, "memfd_create")


class Ring:
    """The allocator of a worker's region: spans handed out and returned in any order.

    First fit over a sorted list of free extents, merged when space comes back: a body
    received slowly holds only its own span, never the space after it (as a ring's
    in-order reclamation would), and the lowest offsets are reused first, so a region
    that keeps up only ever touches its first pages. The free list stays as short as
    the number of spans held. Pure arithmetic (no memory), so its rules are tested on
    their own.
    """

    __slots__ = ("_free", "_held", "size", "used")

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError(f"a ring needs a positive size, not {size}")
        self.size = size
        self.used = 0
        """Bytes in spans held."""
        self._free: list[list[int]] = [[0, size]]  # [start, end) extents, sorted, apart
        self._held: dict[int, int] = {}  # start -> end, of every span held

    @property
    def held(self) -> int:
        """Spans handed out and not released."""
        return len(self._held)

    def alloc(self, length: int) -> int | None:
        """The offset of ``length`` contiguous bytes, or None if they do not fit now."""
        if length <= 0 or length > self.size - self.used:
            return None
        free = self._free
        for i, extent in enumerate(free):
            start, end = extent
            if end - start >= length:
                if end - start == length:
                    del free[i]
                else:
                    extent[0] = start + length
                self._held[start] = start + length
                self.used += length
                return start
        return None

    def release(self, position: int) -> None:
        """The span at ``position`` is free again (read by the parent, or never used)."""
        end = self._held.pop(position, None)
        if end is None:
            raise ValueError(f"no span held at {position}")
        self.used -= end - position
        free = self._free
        i = bisect.bisect_left(free, position, key=lambda extent: extent[0])
        if i < len(free) and free[i][0] == end:  # merge with the extent after it
            free[i][0] = position
        else:
            free.insert(i, [position, end])
        if i and free[i - 1][1] == position:  # and with the one before it
            free[i - 1][1] = free[i][1]
            del free[i]


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

    __slots__ = ("fd", "map", "size", "taken")

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.fd, self.map = _create(size, name)
        self.taken = 0
        """Bodies copied out so far (what the next ``FREE`` frame reports)."""

    def take(self, position: int, length: int) -> bytes:
        """A copy of the body at ``position`` (the space goes back on the next FREE)."""
        offset = position % self.size
        if offset + length > self.size or length < 0:
            raise ValueError(f"a body at {position} of {length} bytes is outside the ring")
        self.taken += 1
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

    __slots__ = ("map", "read", "ring", "sent", "threshold", "view")

    def __init__(self, fd: int, size: int, threshold: int) -> None:
        try:
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.view = memoryview(self.map)
        self.ring = Ring(size)
        self.threshold = threshold
        self.sent: deque[int] = deque()
        """Positions of the bodies sent to the parent and not yet read, in sent order."""
        self.read = 0
        """Bodies the parent has read (the last ``FREE`` frame)."""

    def put(self, body: bytes) -> int | None:
        """Copy ``body`` into the ring and return its position (None: send it inline)."""
        length = len(body)
        if length < self.threshold:
            return None
        position = self.ring.alloc(length)
        if position is None:
            return None
        self.view[position : position + length] = body
        return position

    def send(self, position: int) -> None:
        """The body at ``position`` goes to the parent in the next Result batch."""
        self.sent.append(position)

    def parent_read(self, count: int) -> None:
        """A ``FREE`` frame: the parent has read ``count`` bodies in all, in sent order."""
        sent, release = self.sent, self.ring.release
        while self.read < count and sent:
            release(sent.popleft())
            self.read += 1

    def close(self) -> None:
        self.view.release()
        with contextlib.suppress(BufferError):
            self.map.close()


class RingBodyBuffers(BodyBuffers):
    """Receive large bodies straight into the ring (a worker's :class:`BodyBuffers`).

    The connection receives a Content-Length body into the span :meth:`take` hands
    out; :meth:`finish` still makes the ``bytes`` the Response keeps (layers and
    ``process=`` functions see a plain body), and remembers where its bytes already
    are, so that the worker sends the position instead of copying the body again
    (:meth:`claim`). A span whose body does not become its job's Result body (a
    body decompressed or replaced, a failed one) goes back at once.
    Bodies the ring has no room for get an ordinary buffer.
    """

    __slots__ = ("_spans", "placed", "region")

    def __init__(self, region: WorkerRegion) -> None:
        super().__init__()
        self.region = region
        self._spans: dict[int, int] = {}  # id(view) -> position, of spans being received
        #: per task: the bodies received into the ring (body, position), not yet claimed
        self.placed: dict[asyncio.Task[object] | None, list[tuple[bytes, int]]] = {}

    def take(self, length: int) -> memoryview:
        region = self.region
        position = region.ring.alloc(length) if length >= region.threshold else None
        if position is None:
            return super().take(length)
        view = region.view[position : position + length]
        self._spans[id(view)] = position
        return view

    def finish(self, view: memoryview) -> bytes:
        position = self._spans.pop(id(view), None)
        if position is None:
            return super().finish(view)
        body = view.tobytes()
        task = asyncio.current_task()
        placed = self.placed.get(task)
        if placed is None:
            placed = self.placed[task] = []
        placed.append((body, position))
        return body

    def abandon(self, view: memoryview) -> None:
        position = self._spans.pop(id(view), None)
        if position is None:
            super().abandon(view)
        else:
            self.region.ring.release(position)

    def claim(self, body: bytes | None) -> int | None:
        """Where ``body`` (this task's job's Result body) already is in the ring, if it
        is; every other body this task received into the ring is released."""
        placed = self.placed
        if not placed:
            return None
        found = None
        release = self.region.ring.release
        for body_, position in placed.pop(asyncio.current_task(), ()):
            if body_ is body and found is None:
                found = position
            else:
                release(position)
        if placed:  # bodies of tasks that ended without a Result here (cancelled)
            for task in [task for task in placed if task is None or task.done()]:
                for _, position in placed.pop(task):
                    release(position)
        return found
