"""ConnectionPool: keep-alive connections per origin, with limits.

State changes are synchronous and happen in one place (checkout, checkin, discard), so
there is no await between deciding and acting on the pool's books; the only awaits are
"connect a new one" and "wait for capacity". Idle connections are a LIFO stack per key —
the most recently used connection is the one least likely to have been closed by the
server — and each is checked for readiness before reuse.

Eviction happens on checkout (expired or dead connections are skipped and closed), on
checkin (over ``max_idle_per_host`` the oldest goes) and in a background reaper that runs
while any connection is open, so an origin never visited again does not keep sockets open.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

from .errors import ClientClosed, PoolTimeout
from .runtimes import Runtime
from .url import Origin

__all__ = ["ConnectionPool", "PoolKey", "PooledConnection"]


#: Connections are pooled per origin; a proxy or SNI override joins the key in later issues.
PoolKey = Origin


class PooledConnection(Protocol):
    """What the pool needs of a connection."""

    key: PoolKey
    idle_since: float
    holds_slot: bool
    """True while the connection counts against the pool's limits (cleared once freed)."""

    def is_ready(self) -> bool:
        """Can carry a new request right now (open, idle, nothing unexpected received)."""

    def close(self) -> None: ...


C = TypeVar("C", bound=PooledConnection)


class ConnectionPool(Generic[C]):
    """Connections by :class:`PoolKey`, bounded by idle and open-connection limits."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        max_idle_per_host: int = 10,
        idle_timeout: float | None = 90.0,
        max_connections: int | None = 100,
        max_connections_per_host: int | None = None,
    ) -> None:
        self._runtime = runtime
        self._max_idle = max_idle_per_host
        self._idle_timeout = idle_timeout
        self._max_total = max_connections
        self._max_per_key = max_connections_per_host
        self._idle: dict[PoolKey, list[C]] = {}
        self._open: dict[PoolKey, int] = {}
        self._open_total = 0
        self._waiters: deque[tuple[PoolKey, asyncio.Future[None]]] = deque()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    # -- inspection ----------------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        """Connections open or being opened, idle or in use."""
        return self._open_total

    def idle_connections(self, key: PoolKey | None = None) -> int:
        if key is not None:
            return len(self._idle.get(key, ()))
        return sum(len(stack) for stack in self._idle.values())

    # -- checkout ------------------------------------------------------------------------------

    async def acquire(
        self,
        key: PoolKey,
        connect: Callable[[PoolKey, Any], Awaitable[C]],
        context: Any,
        deadline: float | None,
        *,
        reuse: bool = True,
    ) -> tuple[C, bool]:
        """A ready connection for ``key`` and whether it was reused.

        Reuses an idle connection when one is ready (unless ``reuse`` is false); otherwise
        opens one with ``connect(key, context)`` when the limits allow, or waits (until
        ``deadline``: :class:`PoolTimeout`).
        """
        while True:
            if self._closed:
                raise ClientClosed("the client is closed")
            conn = self.checkout(key) if reuse else None
            if conn is not None:
                return conn, True
            if self._reserve(key):
                try:
                    new = await connect(key, context)
                except BaseException:
                    self._unreserve(key)
                    raise
                new.holds_slot = True
                return new, False
            await self._wait(key, deadline)

    def checkout(self, key: PoolKey) -> C | None:
        """A ready idle connection for ``key``, or ``None`` (synchronous fast path)."""
        stack = self._idle.get(key)
        if not stack:
            return None
        expires_before = self._expiry_cutoff()
        while stack:
            conn = stack.pop()
            if conn.idle_since >= expires_before and conn.is_ready():
                if not stack:
                    del self._idle[key]
                return conn
            self._forget(conn)
        del self._idle[key]
        return None

    def _reserve(self, key: PoolKey) -> bool:
        per_key = self._open.get(key, 0)
        if self._max_per_key is not None and per_key >= self._max_per_key:
            return False
        at_limit = self._max_total is not None and self._open_total >= self._max_total
        if at_limit and not self._evict_oldest_idle():
            return False
        self._open[key] = per_key + 1
        self._open_total += 1
        return True

    def _unreserve(self, key: PoolKey) -> None:
        remaining = self._open[key] - 1
        if remaining:
            self._open[key] = remaining
        else:
            del self._open[key]
        self._open_total -= 1
        self._wake_waiters()

    async def _wait(self, key: PoolKey, deadline: float | None) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        entry = (key, waiter)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except TimeoutError:
            raise PoolTimeout(
                f"no connection to {key.host}:{key.port} became free in time "
                f"(max_connections={self._max_total}, "
                f"max_connections_per_host={self._max_per_key})"
            ) from None
        finally:
            if not waiter.done():
                self._waiters.remove(entry)

    def _wake_waiters(self) -> None:
        """Wake waiters that could now proceed (FIFO; each re-checks when it runs)."""
        budget = 1 if self._max_total is None else max(1, self._max_total - self._open_total)
        for entry in list(self._waiters):
            if budget <= 0:
                break
            key, waiter = entry
            if waiter.done():
                self._waiters.remove(entry)
                continue
            per_key_ok = self._max_per_key is None or self._open.get(key, 0) < self._max_per_key
            if self._idle.get(key) or per_key_ok:
                self._waiters.remove(entry)
                waiter.set_result(None)
                budget -= 1

    # -- checkin -------------------------------------------------------------------------------

    def release(self, conn: C) -> None:
        """Return a connection after its response was fully read; closes it if unusable."""
        if self._closed or self._max_idle == 0 or not conn.is_ready():
            self.discard(conn)
            return
        conn.idle_since = self._runtime.now()
        stack = self._idle.setdefault(conn.key, [])
        stack.append(conn)
        if len(stack) > self._max_idle:
            self._forget(stack.pop(0))
        if self._waiters:
            self._wake_waiters()
        if self._reaper is None and self._idle_timeout is not None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    def discard(self, conn: C) -> None:
        """Close a connection that must not be reused and free its slot."""
        self._forget(conn)

    def _forget(self, conn: C) -> None:
        conn.close()
        if not conn.holds_slot:
            return
        conn.holds_slot = False
        key = conn.key
        count = self._open.get(key, 0)
        if count <= 1:
            self._open.pop(key, None)
        else:
            self._open[key] = count - 1
        self._open_total -= 1
        if self._waiters:
            self._wake_waiters()

    def _evict_oldest_idle(self) -> bool:
        oldest: C | None = None
        for stack in self._idle.values():
            if stack and (oldest is None or stack[0].idle_since < oldest.idle_since):
                oldest = stack[0]
        if oldest is None:
            return False
        stack = self._idle[oldest.key]
        stack.pop(0)
        if not stack:
            del self._idle[oldest.key]
        self._forget(oldest)
        return True

    # -- expiry --------------------------------------------------------------------------------

    def _expiry_cutoff(self) -> float:
        if self._idle_timeout is None:
            return float("-inf")
        return self._runtime.now() - self._idle_timeout

    def evict_expired(self) -> int:
        """Close idle connections past ``idle_timeout`` or no longer ready; returns how many."""
        cutoff = self._expiry_cutoff()
        closed = 0
        for key in list(self._idle):
            stack = self._idle[key]
            keep = [c for c in stack if c.idle_since >= cutoff and c.is_ready()]
            for conn in stack:
                if conn not in keep:
                    self._forget(conn)
                    closed += 1
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        return closed

    async def _reap(self) -> None:
        """Evict expired idle connections every ``idle_timeout / 2`` (at most 30 s).

        It runs while any connection is open, idle or in use, not just while one is idle:
        a sequential client empties the idle stack on every checkout, and a reaper that
        stopped then would be a new task per request.
        """
        assert self._idle_timeout is not None
        interval = max(0.05, min(self._idle_timeout / 2, 30.0))
        try:
            while (self._idle or self._open_total) and not self._closed:
                await self._runtime.sleep(interval)
                self.evict_expired()
        finally:
            self._reaper = None

    # -- shutdown ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every idle connection and refuse further checkouts."""
        self._closed = True
        for stack in self._idle.values():
            for conn in stack:
                self._forget(conn)
        self._idle.clear()
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ClientClosed("the client was closed while waiting"))
        self._waiters.clear()
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
