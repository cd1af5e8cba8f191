"""A Client belongs to the event loop it was first used on.

Its pool holds connections whose transports belong to that loop, so using it from
another loop while the first is still open must fail loudly, not hand out sockets a
second loop cannot drive. The engine finds the running loop without
``asyncio.get_running_loop()`` on every request (on CPython 3.11 that is a ``getpid()``
system call each time): it trusts the loop it is bound to when that loop runs in the
calling thread of the same process. These tests pin down that this shortcut decides as
``get_running_loop()`` would: another loop, the same loop in another thread, a closed
loop, and a forked child (which inherits a copy of a loop that looks as if it runs).

A client may also outlive its loop (``asyncio.run()`` twice with one client): its idle
connections must close when that loop ends, and ``aclose()`` from a later loop must
close the rest instead of raising from the dead loop's transports.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import threading
import warnings
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

import aioduct
from aioduct import uring
from aioduct.testing.nginx import Nginx

T = TypeVar("T")


async def _status(client: aioduct.Client, url: str) -> int:
    response = await client.get(url)
    return response.status


def test_a_second_open_loop_is_refused(nginx: Nginx) -> None:
    url = nginx.http_url + "/small"
    client = aioduct.Client()
    first = asyncio.new_event_loop()
    second = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(_status(client, url)) == 200
        with pytest.raises(RuntimeError, match="bound to the event loop it was first used on"):
            second.run_until_complete(_status(client, url))
        assert first.run_until_complete(_status(client, url)) == 200  # still fine there
        first.run_until_complete(client.aclose())
    finally:
        first.close()
        second.close()


def test_after_its_loop_closed_the_client_moves_to_the_next(nginx: Nginx) -> None:
    url = nginx.http_url + "/small"
    client = aioduct.Client()

    async def last() -> int:
        try:
            return await _status(client, url)  # a fresh pool on the new loop
        finally:
            await client.aclose()

    assert asyncio.run(_status(client, url)) == 200
    assert asyncio.run(last()) == 200


def test_the_same_loop_run_from_another_thread_keeps_its_pool(nginx: Nginx) -> None:
    url = nginx.http_url + "/small"
    client = aioduct.Client()
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(_status(client, url)) == 200
        pool = client._engine.pool
        statuses: list[int] = []
        thread = threading.Thread(
            target=lambda: statuses.append(loop.run_until_complete(_status(client, url)))
        )
        thread.start()
        thread.join()
        assert statuses == [200]
        assert client._engine.pool is pool
        assert loop.run_until_complete(_status(client, url)) == 200  # and back again
        loop.run_until_complete(client.aclose())
    finally:
        loop.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_does_not_take_the_parents_loop_for_its_own(nginx: Nginx) -> None:
    """Forked inside the running loop: the child's copy of that loop says it runs, in a
    thread with the same id. A new loop in the child must still be refused (as
    get_running_loop() would), not served with the parent's pooled sockets."""
    url = nginx.http_url + "/small"
    client = aioduct.Client()

    async def fork_here() -> int:
        assert await _status(client, url) == 200
        pid = os.fork()
        if pid == 0:  # the child: no pytest, no exceptions past this point
            code = 3
            try:
                asyncio.run(_status(client, url))
                code = 1  # served from the parent's pool
            except RuntimeError as exc:
                code = 0 if "first used on" in str(exc) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)  # noqa: ASYNC222 (the child exits at once)
        await client.aclose()
        return os.waitstatus_to_exitcode(status)

    assert asyncio.run(fork_here()) == 0


# -- a client that outlives its loop ------------------------------------------------------------


def _loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    if kind == "uring":
        reason = uring.unavailable_reason()
        if reason is not None:
            pytest.skip(reason)
        from aioduct.uring.loop import new_event_loop

        return new_event_loop
    return asyncio.new_event_loop


def _run(kind: str, main: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=_loop_factory(kind)) as runner:
        return runner.run(main)


def _open_sockets() -> set[str]:
    """This process's open sockets, by inode (read before any GC could close one)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:"):
                found.add(target)
    return found


async def _fetch_five(client: aioduct.Client, url: str) -> list[int]:
    responses = await asyncio.gather(*(client.get(url) for _ in range(5)))
    return [response.status for response in responses]


LOOPS = ["asyncio", "uvloop", "uring"]


@pytest.mark.parametrize("kind", LOOPS)
def test_pooled_connections_close_when_their_loop_ends(nginx: Nginx, kind: str) -> None:
    """asyncio.run() cancels every task before it closes the loop, the pool's reaper
    among them: the idle connections close then, while the loop can still run their
    clean-up (afterwards, uvloop's sockets could never be closed at all)."""
    url = nginx.http_url + "/small"
    client = aioduct.Client()
    before = _open_sockets()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        assert _run(kind, _fetch_five(client, url)) == [200] * 5
        assert _open_sockets() - before == set()
        assert _run(kind, _fetch_five(client, url)) == [200] * 5  # moves to the next loop
        assert _open_sockets() - before == set()
        _run(kind, client.aclose())
        gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


@pytest.mark.parametrize("kind", LOOPS)
def test_aclose_from_another_loop_releases_connections_of_a_closed_one(
    nginx: Nginx, kind: str
) -> None:
    """Without a reaper (no idle timeout) the connections outlive their loop; closing the
    client later, from another loop, closes their sockets instead of raising "Event loop
    is closed" from the dead loop's transports."""
    url = nginx.http_url + "/small"
    client = aioduct.Client(pool_idle_timeout=None)
    before = _open_sockets()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        assert _run(kind, _fetch_five(client, url)) == [200] * 5
        _run(kind, client.aclose())
        if kind != "uvloop":  # a closed uvloop loop's handles cannot be closed any more
            assert _open_sockets() - before == set()
        gc.collect()
    if kind != "uvloop":
        assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
