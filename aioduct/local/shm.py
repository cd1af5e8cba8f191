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

Why a ring, and why spans come back out of order: positions count bytes from the start
and only grow; ``position % size`` is the offset in the mapping, and allocating is two
additions. A body never wraps around the end: it starts the next lap instead, and the
bytes skipped count as used until the span before them is free. Bodies received at the
same time finish in any order, and a span is released when the parent has read it, or at
once when its body failed (reset, truncated, timed out, too large) or did not become its
job's Result body (a decoded one, for instance); the reusable part of the ring ends
where the oldest span still held begins (:class:`Ring`). The parent reads bodies in the
order they were sent, so a ``FREE`` frame is one number: bodies read so far.

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
    """The allocator of a worker's ring: positions handed out in order, returned in any.

    A body received into the ring holds its space from the start of its receive, and
    bodies received at the same time finish (and reach the parent) in any order, so
    space comes back out of order: each span is released on its own (:meth:`release`),
    and the reusable part of the ring ends where the oldest span still held begins.
    Pure arithmetic (no memory), so its rules are tested on their own.
    """

    __slots__ = ("_ends", "_order", "_released", "freed", "head", "size")

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError(f"a ring needs a positive size, not {size}")
        self.size = size
        self.head = 0
        """The next position to hand out."""
        self.freed = 0
        """Everything before this position is released."""
        self._order: deque[int] = deque()  # positions of the spans held, oldest first
        self._ends: dict[int, int] = {}  # position -> end, of every span held
        self._released: set[int] = set()  # spans released while an older one is held

    @property
    def used(self) -> int:
        return self.head - self.freed

    @property
    def held(self) -> int:
        """Spans handed out and not released."""
        return len(self._ends) - len(self._released)

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
        self._order.append(head)
        self._ends[head] = head + length
        return head

    def release(self, position: int) -> None:
        """The span at ``position`` is free again (read by the parent, or never used)."""
        if position not in self._ends or position in self._released:
            raise ValueError(f"no span held at {position}")
        self._released.add(position)
        order, ends, released = self._order, self._ends, self._released
        while order and order[0] in released:
            first = order.popleft()
            released.discard(first)
            self.freed = ends.pop(first)
        if not order:
            self.freed = self.head  # (a skipped lap end counts as used until now)

    def free(self, position: int) -> None:
        """Release every span that ends at or before ``position``."""
        if position > self.head:
            raise ValueError(f"freed up to {position}, beyond the head {self.head}")
        for start in [p for p, end in self._ends.items() if end <= position]:
            if start not in self._released:
                self.release(start)


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
        offset = position % self.ring.size
        self.view[offset : offset + length] = body
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
        offset = position % region.ring.size
        view = region.view[offset : offset + length]
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
