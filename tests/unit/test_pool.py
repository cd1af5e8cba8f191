"""ConnectionPool as a state machine, with fake connections and a controllable clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import aioduct
from aioduct import ClientClosed, PoolTimeout
from aioduct.pool import ConnectionPool, PoolKey
from aioduct.url import Origin

A = Origin("http", "a.test", 80)
B = Origin("http", "b.test", 80)


class FakeConn:
    multiplexed = False

    def __init__(self, key: PoolKey, name: str) -> None:
        self.key = key
        self.name = name
        self.idle_since = 0.0
        self.holds_slot = False
        self.ready = True
        self.closed = False

    def is_ready(self) -> bool:
        return self.ready and not self.closed

    def close(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return self.name


class Clock:
    name = "fake"
    background = True

    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


def make_pool(**kw: Any) -> tuple[ConnectionPool, Clock, list[FakeConn]]:
    clock = Clock()
    made: list[FakeConn] = []
    return ConnectionPool(clock, **kw), clock, made  # type: ignore[arg-type]


def connector(key: PoolKey, made: list[FakeConn]):
    async def connect(_key: PoolKey, _context: object, _version: object) -> FakeConn:
        conn = FakeConn(key, f"{key.host}#{len(made)}")
        made.append(conn)
        return conn

    return connect


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_reuse_is_lifo_and_skips_dead_or_expired() -> None:
    async def scenario() -> None:
        pool, clock, made = make_pool(idle_timeout=10)
        c1, reused = await pool.acquire(A, connector(A, made), None, None)
        c2, _ = await pool.acquire(A, connector(A, made), None, None)
        assert not reused and pool.open_connections == 2
        pool.release(c1)
        clock.t += 1
        pool.release(c2)
        got, reused = await pool.acquire(A, connector(A, made), None, None)
        assert reused and got is c2  # most recently returned first
        pool.release(got)
        c2.ready = False  # server closed it while idle
        got, reused = await pool.acquire(A, connector(A, made), None, None)
        assert got is c1 and reused and c2.closed
        pool.release(got)
        clock.t += 11  # past idle_timeout
        got, reused = await pool.acquire(A, connector(A, made), None, None)
        assert not reused and c1.closed
        assert pool.open_connections == 1

    run(scenario())


def test_max_idle_per_host_evicts_oldest_and_zero_disables_reuse() -> None:
    async def scenario() -> None:
        pool, clock, made = make_pool(max_idle_per_host=2)
        conns = [(await pool.acquire(A, connector(A, made), None, None))[0] for _ in range(3)]
        for c in conns:
            clock.t += 1
            pool.release(c)
        assert pool.idle_connections(A) == 2 and conns[0].closed
        assert pool.open_connections == 2

        pool0, _, made0 = make_pool(max_idle_per_host=0)
        c, _ = await pool0.acquire(A, connector(A, made0), None, None)
        pool0.release(c)
        assert c.closed and pool0.open_connections == 0

    run(scenario())


def test_limits_make_requests_wait_then_time_out() -> None:
    async def scenario() -> None:
        pool, _, made = make_pool(max_connections=1)
        c1, _ = await pool.acquire(A, connector(A, made), None, None)
        loop = asyncio.get_running_loop()
        waiter = asyncio.create_task(pool.acquire(A, connector(A, made), None, None))
        await asyncio.sleep(0)
        assert not waiter.done()
        pool.release(c1)  # goes idle -> the waiter takes it
        got, reused = await waiter
        assert got is c1 and reused
        with pytest.raises(PoolTimeout, match="max_connections=1"):
            await pool.acquire(A, connector(A, made), None, loop.time() + 0.05)
        pool.discard(got)
        assert pool.open_connections == 0

    run(scenario())


def test_total_limit_evicts_idle_connections_of_other_hosts() -> None:
    async def scenario() -> None:
        pool, _, made = make_pool(max_connections=1)
        a, _ = await pool.acquire(A, connector(A, made), None, None)
        pool.release(a)
        _, reused = await pool.acquire(B, connector(B, made), None, None)
        assert not reused and a.closed and pool.open_connections == 1

    run(scenario())


def test_per_host_limit_leaves_other_hosts_alone() -> None:
    async def scenario() -> None:
        pool, _, made = make_pool(max_connections_per_host=1)
        await pool.acquire(A, connector(A, made), None, None)
        b, _ = await pool.acquire(B, connector(B, made), None, None)
        assert b.key == B
        with pytest.raises(PoolTimeout):
            deadline = asyncio.get_running_loop().time() + 0.02
            await pool.acquire(A, connector(A, made), None, deadline)

    run(scenario())


def test_failed_connect_frees_its_slot() -> None:
    async def scenario() -> None:
        pool, _, _ = make_pool(max_connections=1)

        async def boom(_key: PoolKey, _context: object, _version: object) -> FakeConn:
            raise OSError("refused")

        with pytest.raises(OSError):
            await pool.acquire(A, boom, None, None)
        assert pool.open_connections == 0

    run(scenario())


def test_discard_twice_frees_one_slot() -> None:
    async def scenario() -> None:
        pool, _, made = make_pool()
        c, _ = await pool.acquire(A, connector(A, made), None, None)
        await pool.acquire(A, connector(A, made), None, None)
        pool.discard(c)
        pool.discard(c)
        assert pool.open_connections == 1

    run(scenario())


def test_reaper_and_close() -> None:
    async def scenario() -> None:
        pool, clock, made = make_pool(idle_timeout=0.1)
        c, _ = await pool.acquire(A, connector(A, made), None, None)
        pool.release(c)
        clock.t += 1
        assert pool.evict_expired() == 1 and c.closed
        c2, _ = await pool.acquire(A, connector(A, made), None, None)
        pool.release(c2)
        waiter_pool, _, made2 = make_pool(max_connections=1)
        await waiter_pool.acquire(A, connector(A, made2), None, None)
        waiting = asyncio.create_task(waiter_pool.acquire(A, connector(A, made2), None, None))
        await asyncio.sleep(0)
        waiter_pool.close()
        with pytest.raises(ClientClosed):
            await waiting
        pool.close()
        assert c2.closed
        with pytest.raises(ClientClosed):
            await pool.acquire(A, connector(A, made), None, None)

    run(scenario())


# -- shared (multiplexed) connections ---------------------------------------------------


class FakeShared(FakeConn):
    """A multiplexed connection: stream slots instead of checkout."""

    multiplexed = True  # type: ignore[assignment]

    def __init__(self, key: PoolKey, name: str, max_streams: int) -> None:
        super().__init__(key, name)
        self.in_use = 0
        self.aliases: list[PoolKey] = []
        self.on_change: Any = None
        self.max_streams = max_streams
        self.alive = True

    def has_capacity(self) -> bool:
        return self.is_alive() and self.in_use < self.max_streams

    def is_alive(self) -> bool:
        return self.alive and not self.closed

    def finish(self) -> None:
        self.in_use -= 1
        self.on_change(self)


def shared_connector(made: list[FakeShared], max_streams: int, delay: float = 0.01):
    async def connect(key: PoolKey, _context: object, _version: object) -> FakeShared:
        await asyncio.sleep(delay)
        conn = FakeShared(key, f"{key.host}#{len(made)}", max_streams)
        made.append(conn)
        return conn

    return connect


def test_concurrent_first_requests_join_the_connection_being_opened() -> None:
    async def scenario() -> None:
        pool, _, _ = make_pool()
        made: list[FakeShared] = []
        connect = shared_connector(made, max_streams=3)
        got = await asyncio.gather(
            *(pool.acquire(A, connect, None, None, multiplex=True) for _ in range(5))
        )
        # 3 streams on the first connection, then a second one for the other 2
        assert len(made) == 2 and pool.open_connections == 2
        assert [c.in_use for c in made] == [3, 2]
        assert sum(1 for _, reused in got if not reused) == 2
        assert pool.shared_connections(A) == made

    run(scenario())


def test_finished_streams_free_slots_and_dead_connections_leave() -> None:
    async def scenario() -> None:
        pool, _, _ = make_pool(idle_timeout=10)
        made: list[FakeShared] = []
        connect = shared_connector(made, max_streams=1, delay=0)
        conn, _ = await pool.acquire(A, connect, None, None, multiplex=True)
        assert pool.checkout(A) is None  # at its stream limit
        conn.finish()
        assert pool.checkout(A) is conn and conn.in_use == 1
        assert pool.checkout(A, version="1.1") is None  # forced HTTP/1.1 skips it
        conn.alive = False  # GOAWAY: no new streams, the busy one finishes
        conn.on_change(conn)
        assert pool.shared_connections(A) == [] and not conn.closed
        conn.finish()
        assert conn.closed and pool.open_connections == 0

    run(scenario())


def test_idle_shared_connections_expire() -> None:
    async def scenario() -> None:
        pool, clock, _ = make_pool(idle_timeout=10)
        made: list[FakeShared] = []
        conn, _ = await pool.acquire(A, shared_connector(made, 5, 0), None, None, multiplex=True)
        conn.finish()
        clock.t += 11
        assert pool.evict_expired() == 1 and conn.closed and pool.open_connections == 0

    run(scenario())


def test_an_origin_that_chose_http1_is_not_waited_for_again() -> None:
    async def scenario() -> None:
        pool, _, made = make_pool()
        connect = connector(A, made)
        first = await asyncio.gather(
            *(pool.acquire(A, connect, None, None, multiplex=True) for _ in range(3))
        )
        assert len(made) == 3 and A in pool._h1_only
        assert all(not reused for _, reused in first)

    run(scenario())


def test_a_failed_shared_attempt_fails_its_waiters_too() -> None:
    async def scenario() -> None:
        pool, _, _ = make_pool()

        async def refused(key: PoolKey, _context: object, _version: object) -> FakeConn:
            await asyncio.sleep(0.01)
            raise aioduct.ConnectError("refused")

        results = await asyncio.gather(
            *(pool.acquire(A, refused, None, None, multiplex=True) for _ in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(r, aioduct.ConnectError) for r in results)
        assert len({id(r) for r in results}) == 3  # each caller its own copy
        assert pool.open_connections == 0

    run(scenario())
