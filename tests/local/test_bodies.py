"""Response bodies from workers: whole and in place, through shared memory or not."""

from __future__ import annotations

import os
import signal

import pytest

from aioduct import LocalEngine, Result
from aioduct.local import shm

pytestmark = pytest.mark.nginx

Bodies = tuple[str, dict[str, bytes]]


def check(results: list[Result], origin: str, files: dict[str, bytes], count: int) -> None:
    assert sorted(r.id for r in results) == list(range(count))  # each job once
    for r in results:
        expected = files[r.url.removeprefix(origin)]
        assert r.error is None and r.status == 200, r
        assert type(r.body) is bytes and r.body == expected and r.size == len(expected)


def urls(origin: str, files: dict[str, bytes], count: int) -> list[str]:
    paths = sorted(files)
    return [origin + paths[i % len(paths)] for i in range(count)]


@pytest.mark.skipif(not shm.supported(), reason="no memfd_create on this platform")
def test_large_bodies_come_through_shared_memory(bodies: Bodies, loop_kind: str) -> None:
    origin, files = bodies
    jobs = urls(origin, files, 96)
    with LocalEngine(workers=1, loop=loop_kind, concurrency=8) as engine:
        results = list(engine.map(jobs))
        stats = engine.stats
    check(results, origin, files, len(jobs))
    large = sum(len(files[u.removeprefix(origin)]) >= shm.DEFAULT_THRESHOLD for u in jobs)
    assert 0 < large < len(jobs) and stats.shared_bodies == large  # small ones inline


def test_a_full_ring_sends_bodies_inline(bodies: Bodies) -> None:
    origin, files = bodies
    jobs = urls(origin, files, 120)
    # Room for two of the largest bodies: the rest wait for no one and travel in frames.
    with LocalEngine(workers=1, loop="asyncio", concurrency=16, shm_size=3 << 20) as engine:
        results = list(engine.map(jobs))
        shared = engine.stats.shared_bodies
    check(results, origin, files, len(jobs))
    large = sum(len(files[u.removeprefix(origin)]) >= shm.DEFAULT_THRESHOLD for u in jobs)
    assert 0 < shared < large


def test_without_shared_memory_or_without_bodies(bodies: Bodies) -> None:
    origin, files = bodies
    jobs = urls(origin, files, 24)
    with LocalEngine(workers=1, loop="asyncio", shm_size=0) as engine:
        results = list(engine.map(jobs))
        assert engine.stats.shared_bodies == 0
    check(results, origin, files, len(jobs))
    with LocalEngine(workers=1, loop="asyncio", keep_body=False) as engine:
        bare = list(engine.map(jobs))
        assert engine.stats.shared_bodies == 0
    assert all(r.body is None and r.size == len(files[r.url.removeprefix(origin)]) for r in bare)
    with pytest.raises(ValueError, match="shm_size must be a number of bytes"):
        LocalEngine(workers=1, loop="asyncio", shm_size=-1)


async def test_bodies_in_asyncio_callers(bodies: Bodies) -> None:
    origin, files = bodies
    jobs = urls(origin, files, 48)
    async with LocalEngine(workers=2, loop="asyncio", sharding="balanced") as engine:
        results = [r async for r in engine.amap(jobs)]
        one = await engine.arequest("GET", origin + "/f4")
    check(results, origin, files, len(jobs))
    assert one.body == files["/f4"] and len(one.body) == 1 << 20


def test_a_killed_worker_loses_no_body(bodies: Bodies, loop_kind: str) -> None:
    origin, files = bodies
    jobs = urls(origin, files, 240)
    seen: list[Result] = []
    with LocalEngine(workers=1, loop=loop_kind, concurrency=8) as engine:
        victim = engine.pids[0]
        for result in engine.map(jobs):
            seen.append(result)
            if len(seen) == 40:
                os.kill(victim, signal.SIGKILL)  # mid-map, its ring in use
        assert engine.stats.crashes == 1 and engine.pids != [victim]
        resent = engine.stats.redispatched
    check(seen, origin, files, len(jobs))
    assert resent > 0 and sorted(r.attempts for r in seen) == [1] * (240 - resent) + [2] * resent
