"""ConnectionPool: keep-alive connections per origin, with limits.

State changes are synchronous and happen in one place (checkout, checkin, discard), so
there is no await between deciding and acting on the pool's books; the only awaits are
"connect a new one" and "wait for capacity". Idle connections are a LIFO stack per key —
the most recently used connection is the one least likely to have been closed by the
server — and each is checked for readiness before reuse.

HTTP/2 connections are *shared*, not checked out: they stay listed under their origin
(and under every origin coalesced onto them) while each checkout takes one stream slot,
up to the server's SETTINGS_MAX_CONCURRENT_STREAMS; only beyond that is another
connection opened. While a connection that may turn out to be HTTP/2 is being opened,
further requests to that origin wait for it instead of racing their own handshakes; if
it turns out to be HTTP/1.1 the origin is remembered as such and nobody waits next time.

Eviction happens on checkout (expired or dead connections are skipped and closed), on
checkin (over ``max_idle_per_host`` the oldest goes) and in a background reaper that runs
while any connection is open, so an origin never visited again does not keep sockets open.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar, cast

from .errors import AioductError, ClientClosed, PoolTimeout
from .proxy import ProxiedOrigin
from .runtimes import Runtime
from .url import Origin

__all__ = ["ConnectionPool", "MultiplexedConnection", "PoolKey", "PooledConnection"]


#: Connections are pooled per origin, or per origin and proxy (credentials included) for
#: a tunnel, or per proxy for plain-http requests it forwards (see :mod:`aioduct.proxy`).
PoolKey = Origin | ProxiedOrigin


#: Origins remembered as HTTP/1.1-only (forgetting one costs one serialised handshake).
_H1_ONLY_MEMORY = 4096


class PooledConnection(Protocol):
    """What the pool needs of a connection."""

    key: PoolKey
    idle_since: float
    holds_slot: bool
    """True while the connection counts against the pool's limits (cleared once freed)."""

    @property
    def multiplexed(self) -> bool:
        """Carries many requests at once (HTTP/2): shared, never on the idle stack."""

    def is_ready(self) -> bool:
        """Can carry a new request right now (open, idle, nothing unexpected received)."""

    def close(self) -> None: ...


class MultiplexedConnection(PooledConnection, Protocol):
    """What the pool needs of a shared (HTTP/2) connection."""

    in_use: int
    """Stream slots taken: incremented by the pool on checkout, decremented by the
    connection when a stream is done (it then calls ``on_change``)."""
    aliases: list[PoolKey]
    """Other origins coalesced onto this connection."""
    on_change: Callable[[Any], None] | None
    """Set by the pool: called when a slot frees, or the connection dies or drains."""

    def has_capacity(self) -> bool:
        """Alive, accepting new streams, and below the server's concurrency limit."""

    def is_alive(self) -> bool:
        """Open and not draining after a GOAWAY (may still be at its stream limit)."""


C = TypeVar("C", bound=PooledConnection)
Connect = Callable[[PoolKey, Any, "str | None"], Awaitable[C]]


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
        #: Multiplexed connections by origin (coalesced origins included).
        self._shared: dict[PoolKey, list[C]] = {}
        #: Connections being opened that may turn out to be multiplexed, by origin.
        self._pending: dict[PoolKey, asyncio.Future[None]] = {}
        #: Origins whose server chose HTTP/1.1 although HTTP/2 was offered.
        self._h1_only: set[PoolKey] = set()
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

    def shared_connections(self, key: PoolKey | None = None) -> list[C]:
        """Multiplexed connections serving ``key`` (or all of them, once each)."""
        if key is not None:
            return list(self._shared.get(key, ()))
        seen: dict[int, C] = {}
        for conns in self._shared.values():
            for conn in conns:
                seen.setdefault(id(conn), conn)
        return list(seen.values())

    # -- checkout ------------------------------------------------------------------------------

    async def acquire(
        self,
        key: PoolKey,
        connect: Connect[C],
        context: Any,
        deadline: float | None,
        *,
        reuse: bool = True,
        version: str | None = None,
        multiplex: bool = False,
        coalesce: Callable[[PoolKey], Awaitable[C | None]] | None = None,
    ) -> tuple[C, bool]:
        """A ready connection for ``key`` and whether it was reused.

        Reuses an idle connection or a stream slot of a shared one when available (unless
        ``reuse`` is false; ``version`` "1.1"/"2" restricts which); then, with
        ``coalesce``, a shared connection of another origin; otherwise opens one with
        ``connect(key, context, version)`` when the limits allow, or waits (until
        ``deadline``: :class:`PoolTimeout`). ``multiplex`` says the new connection may
        be shared: concurrent callers then wait for it rather than open their own.
        """
        while True:
            if self._closed:
                raise ClientClosed("the client is closed")
            conn = self.checkout(key, version) if reuse else None
            if conn is not None:
                return conn, True
            concurrent = self._runtime.background
            if multiplex and concurrent and key not in self._h1_only:
                pending = self._pending.get(key)
                if pending is not None:
                    await self._join(pending, key, deadline)
                    continue
            if coalesce is not None and self._shared:
                conn = await coalesce(key)
                if conn is not None:
                    return conn, True
            if self._reserve(key):
                opening: asyncio.Future[None] | None = None
                if multiplex and concurrent and key not in self._h1_only:
                    opening = asyncio.get_running_loop().create_future()
                    self._pending[key] = opening
                try:
                    new = await connect(key, context, version)
                except BaseException as exc:
                    self._unreserve(key)
                    if opening is not None:
                        self._settle(key, opening, exc)
                    raise
                new.holds_slot = True
                if new.multiplexed:
                    self._add_shared(new)
                    cast(MultiplexedConnection, new).in_use += 1
                elif multiplex:
                    if len(self._h1_only) >= _H1_ONLY_MEMORY:
                        self._h1_only.clear()  # a crawl must not grow this forever
                    self._h1_only.add(key)
                if opening is not None:
                    self._settle(key, opening, None)
                return new, False
            await self._wait(key, deadline)

    def checkout(self, key: PoolKey, version: str | None = None) -> C | None:
        """A ready idle connection or a shared stream slot for ``key``, or ``None``.

        Synchronous: the fast path of every request.
        """
        stack = self._idle.get(key) if version != "2" else None
        if not stack:
            return self._checkout_shared(key, version) if self._shared else None
        expires_before = self._expiry_cutoff()
        while stack:
            conn = stack.pop()
            if conn.idle_since >= expires_before and conn.is_ready():
                if not stack:
                    del self._idle[key]
                return conn
            self._forget(conn)
        del self._idle[key]
        return self._checkout_shared(key, version) if self._shared else None

    def _checkout_shared(self, key: PoolKey, version: str | None) -> C | None:
        conns = self._shared.get(key)
        if not conns or version == "1.1":
            return None
        for conn in conns:  # fill the oldest connection first: fewer, busier connections
            shared = cast(MultiplexedConnection, conn)
            if shared.has_capacity():
                shared.in_use += 1
                return conn
        return None

    def _has_shared_capacity(self, key: PoolKey) -> bool:
        return any(cast(MultiplexedConnection, c).has_capacity() for c in self._shared.get(key, ()))

    async def _join(
        self, pending: asyncio.Future[None], key: PoolKey, deadline: float | None
    ) -> None:
        """Wait for another request's connection attempt to ``key`` to finish."""
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.shield(pending)
        except TimeoutError:
            raise PoolTimeout(
                f"no connection to {key.host}:{key.port} became available in time "
                "(waited for the one being opened)"
            ) from None
        except AioductError as exc:
            # The attempt failed: every request that waited for it fails the same way
            # (each with its own copy, since errors record their request).
            err = copy.copy(exc)
            err.__dict__.pop("method", None)
            err.__dict__.pop("url", None)
            raise err from None

    def _settle(
        self, key: PoolKey, opening: asyncio.Future[None], exc: BaseException | None
    ) -> None:
        if self._pending.get(key) is opening:
            del self._pending[key]
        if opening.done():
            return
        if isinstance(exc, AioductError):
            opening.set_exception(exc)
            opening.exception()  # retrieved: waiters re-raise copies themselves
        else:
            opening.set_result(None)  # success, or cancelled: waiters try themselves

    # -- shared (multiplexed) connections ------------------------------------------------------

    def _add_shared(self, conn: C) -> None:
        shared = cast(MultiplexedConnection, conn)
        shared.on_change = self._shared_changed
        self._shared.setdefault(conn.key, []).append(conn)
        self._ensure_reaper()

    def add_alias(self, conn: C, key: PoolKey) -> None:
        """Serve ``key`` from the shared ``conn`` too (connection coalescing)."""
        shared = cast(MultiplexedConnection, conn)
        if key not in shared.aliases:
            shared.aliases.append(key)
            self._shared.setdefault(key, []).append(conn)

    def _unlist(self, conn: C) -> None:
        shared = cast(MultiplexedConnection, conn)
        for key in (conn.key, *shared.aliases):
            conns = self._shared.get(key)
            if conns is not None and conn in conns:
                conns.remove(conn)
                if not conns:
                    del self._shared[key]

    def _shared_changed(self, conn: C) -> None:
        """A shared connection freed a slot, died, or is draining after a GOAWAY."""
        shared = cast(MultiplexedConnection, conn)
        if not shared.is_alive():
            self._unlist(conn)
            if shared.in_use <= 0:
                self._forget(conn)
        elif shared.in_use <= 0:
            if self._closed or self._max_idle == 0:
                self._unlist(conn)
                self._forget(conn)
            else:
                conn.idle_since = self._runtime.now()
                self._ensure_reaper()
        if self._waiters:
            self._wake_waiters()

    def _close_idle(self) -> None:
        """Close every connection no request is using."""
        for stack in self._idle.values():
            for conn in stack:
                self._forget(conn)
        self._idle.clear()
        for conn in self.shared_connections():
            # Busy connections finish their streams first (see _shared_changed).
            if cast(MultiplexedConnection, conn).in_use <= 0:
                self._unlist(conn)
                self._forget(conn)

    def _ensure_reaper(self) -> None:
        if (
            self._reaper is None
            and self._idle_timeout is not None
            and not self._closed
            and self._runtime.background
        ):
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

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
        if not self._runtime.background:
            # One request at a time in this thread: nothing else can free a connection.
            raise PoolTimeout(
                f"no connection to {key.host}:{key.port} is free: this thread's open "
                f"responses hold them all (max_connections={self._max_total}, "
                f"max_connections_per_host={self._max_per_key}); read or close them first"
            )
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
            if self._idle.get(key) or per_key_ok or self._has_shared_capacity(key):
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
        if self._reaper is None:
            self._ensure_reaper()

    def discard(self, conn: C) -> None:
        """Close a connection that must not be reused and free its slot."""
        self._forget(conn)

    def detach(self, conn: C) -> None:
        """Free the slot of a connection handed over to its user (an upgrade); not closed."""
        self._free_slot(conn)

    def _forget(self, conn: C) -> None:
        conn.close()
        self._free_slot(conn)

    def _free_slot(self, conn: C) -> None:
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
        for conn in self.shared_connections():
            shared = cast(MultiplexedConnection, conn)
            if shared.in_use <= 0 and (conn.idle_since < cutoff or not shared.is_alive()):
                self._unlist(conn)
                self._forget(conn)
                closed += 1
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
        except asyncio.CancelledError:
            if not self._closed:
                # Cancelled, and not by close(): the loop is ending (asyncio.run() and
                # Runner cancel every task before closing it). Idle connections would
                # outlive their loop, and on uvloop their sockets could never be closed
                # afterwards; close them while the loop still runs.
                self._close_idle()
            raise
        finally:
            self._reaper = None

    # -- shutdown ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every idle connection and refuse further checkouts."""
        self._closed = True
        self._close_idle()
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ClientClosed("the client was closed while waiting"))
        self._waiters.clear()
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
