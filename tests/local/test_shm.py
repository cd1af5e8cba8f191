"""The shared-memory body ring: its allocation rules, and a body crossing two mappings."""

from __future__ import annotations

import os
import random

import pytest

from aioduct.local import shm


def test_first_fit_and_spans_returned_in_any_order() -> None:
    ring = shm.Ring(100)
    assert [ring.alloc(30), ring.alloc(30), ring.alloc(30)] == [0, 30, 60]
    assert ring.alloc(11) is None and ring.alloc(10) == 90 and ring.used == 100
    ring.release(30)  # the middle one first: its space alone comes back
    assert ring.alloc(31) is None and ring.alloc(20) == 30
    ring.release(0)
    assert ring.alloc(40) is None  # 30 + 10 free, but not in one piece
    assert ring.alloc(30) == 0  # lowest offset first
    for position in (60, 90, 0, 30):
        ring.release(position)
    assert ring.used == 0 and ring.held == 0
    assert ring.alloc(100) == 0  # freed extents merged back into one


def test_a_slow_span_holds_back_only_itself() -> None:
    ring = shm.Ring(100)
    slow = ring.alloc(20)
    assert slow == 0
    for _ in range(50):  # many bodies come and go around the one still arriving
        position = ring.alloc(70)
        assert position == 20
        ring.release(position)
    ring.release(slow)
    assert ring.alloc(100) == 0


def test_the_allocator_against_a_model() -> None:
    """Random allocations and releases: spans never overlap, and a span is refused only
    when no free run is long enough (the lowest one is taken)."""
    rng = random.Random(3)
    size = 200
    ring = shm.Ring(size)
    used = [False] * size
    held: dict[int, int] = {}
    for _ in range(5000):
        if held and rng.random() < 0.45:
            position = rng.choice(list(held))
            length = held.pop(position)
            ring.release(position)
            used[position : position + length] = [False] * length
            continue
        length = rng.randint(1, 60)
        runs = [i for i in range(size - length + 1) if not any(used[i : i + length])]
        position = ring.alloc(length)
        assert position == (runs[0] if runs else None)
        if position is not None:
            held[position] = length
            used[position : position + length] = [True] * length
        assert ring.used == sum(used) and ring.held == len(held)


def test_what_never_fits_and_bad_releases() -> None:
    ring = shm.Ring(64)
    assert ring.alloc(65) is None and ring.alloc(0) is None
    assert ring.alloc(64) == 0 and ring.alloc(1) is None
    ring.release(0)
    with pytest.raises(ValueError, match="no span held at 0"):
        ring.release(0)  # twice
    with pytest.raises(ValueError, match="no span held at 7"):
        ring.release(7)
    with pytest.raises(ValueError, match="positive size"):
        shm.Ring(0)


@pytest.mark.skipif(not shm.supported(), reason="no memfd_create on this platform")
def test_a_body_crosses_from_the_worker_mapping_to_the_parent() -> None:
    parent = shm.ParentRegion(1 << 16, "aioduct-test")
    worker = shm.WorkerRegion(os.dup(parent.fd), parent.size, threshold=100)
    parent.close_fd()
    try:
        assert worker.put(b"x" * 99) is None  # below the threshold: inline
        body = os.urandom(40000)
        assert worker.put(body) == 0
        assert worker.put(body) is None  # no room beside the unread first body
        worker.send(0)
        assert parent.take(0, len(body)) == body and parent.taken == 1
        worker.parent_read(parent.taken)  # what a FREE frame does
        position = worker.put(body[::-1])
        assert position == 0  # its space is free again
        assert parent.take(position, len(body)) == body[::-1]
        with pytest.raises(ValueError, match="outside the ring"):
            parent.take(60000, 10000)
    finally:
        worker.close()
        parent.close()
