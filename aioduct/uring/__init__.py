"""io_uring for aioduct: the probe, the ring, and an asyncio event loop on completions.

Importing this package never fails and never touches liburing: it is safe on macOS, on
Windows, without liburing installed, and under a seccomp profile that kills io_uring
callers. Ask first, then build the loop::

    import aioduct.uring

    if aioduct.uring.is_available():
        loop = aioduct.uring.new_event_loop()
    else:
        print("falling back to asyncio:", aioduct.uring.unavailable_reason())

Modules: :mod:`._probe` (can this process use io_uring? asked in a subprocess),
:mod:`._ring` (the only liburing user), :mod:`.proactor` (asyncio's proactor interface
on the ring: in-flight registry, cancellation, GIL-free waiting) and :mod:`.loop`
(:class:`~aioduct.uring.loop.UringEventLoop`). Set ``AIODUCT_URING=off`` to make
io_uring count as unavailable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._probe import ENV_SWITCH, UringUnavailable, is_available, require, unavailable_reason

if TYPE_CHECKING:
    from .loop import UringEventLoop

__all__ = [
    "ENV_SWITCH",
    "UringUnavailable",
    "is_available",
    "new_event_loop",
    "require",
    "unavailable_reason",
]


def new_event_loop(*, entries: int | None = None, mode: str | None = None) -> UringEventLoop:
    """A new :class:`~aioduct.uring.loop.UringEventLoop`, after checking io_uring works.

    Raises :class:`UringUnavailable` (with the probe's reason) instead of importing
    liburing where that could crash the process. ``entries`` and ``mode`` are passed on
    to :func:`aioduct.uring.loop.new_event_loop`.
    """
    require()
    from .loop import new_event_loop as _new

    if entries is None:
        return _new(mode=mode)
    return _new(entries=entries, mode=mode)
