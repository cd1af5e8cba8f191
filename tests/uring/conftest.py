"""Fixtures for the io_uring suite: a runner for coroutines on a fresh UringEventLoop.

Every test that needs io_uring asks for ``run_uring``; it skips with the probe's reason
(``aioduct.uring.unavailable_reason()``) where io_uring is unusable, and only then
imports :mod:`aioduct.uring.loop` (importing liburing can kill a process on CPUs its
build does not support). Probe tests do not use it and run everywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from aioduct import uring

T = TypeVar("T")
RunUring = Callable[..., Any]


@pytest.fixture
def ring() -> Iterator[Any]:
    """A bare 8-entry :class:`~aioduct.uring._ring.Ring` (tests that need io_uring skip
    through their module's ``pytestmark`` before asking for it)."""
    from aioduct.uring._ring import Ring

    r = Ring(8)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def run_uring() -> RunUring:
    """``run_uring(coro, timeout=10, mode=None)``: run ``coro`` on a new UringEventLoop.

    ``mode`` picks the ring's completion mode (``"defer"``, ``"coop"``, ``"plain"``);
    ``None`` is the default choice (the cheapest the kernel supports).
    """
    reason = uring.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    from aioduct.uring.loop import new_event_loop

    def run(coro: Coroutine[Any, Any, T], timeout: float = 10.0, mode: str | None = None) -> T:
        async def guarded() -> T:
            async with asyncio.timeout(timeout):
                return await coro

        with asyncio.Runner(loop_factory=lambda: new_event_loop(mode=mode)) as runner:
            return runner.run(guarded())

    return run
