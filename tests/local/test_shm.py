"""The shared-memory body ring: its allocation rules, and a body crossing two mappings."""

from __future__ import annotations

import os

import pytest

from aioduct.local import shm


def test_positions_grow_and_bodies_never_wrap() -> None:
    ring = shm.Ring(100)
    assert [ring.alloc(30), ring.alloc(30), ring.alloc(30)] == [0, 30, 60]
    assert ring.alloc(30) is None  # it would start the next lap over the unread first body
    ring.free(30)
    assert ring.alloc(30) == 100  # now it does: the last 10 bytes of the lap are skipped
    assert ring.used == 100 and ring.alloc(1) is None
    ring.free(90)
    assert ring.alloc(50) == 130  # offset 30, after the body at offset 0
    ring.free(180)
    assert ring.used == 0


def test_an_empty_ring_starts_over_at_its_first_page() -> None:
    ring = shm.Ring(100)
    assert ring.alloc(40) == 0
    ring.free(40)
    assert ring.alloc(10) == 100  # offset 0 of the next lap, not offset 40
    ring.free(110)
    assert ring.alloc(100) == 200  # the whole ring, once it is empty


def test_what_never_fits_and_stale_frees() -> None:
    ring = shm.Ring(64)
    assert ring.alloc(65) is None and ring.alloc(0) is None
    assert ring.alloc(64) == 0 and ring.alloc(1) is None
    ring.free(64)
    ring.free(10)  # older news: ignored
    assert ring.freed == 64
    with pytest.raises(ValueError, match="beyond the head"):
        ring.free(1000)
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
        assert worker.put(body) is None  # it would wrap onto the unread first body
        worker.send(0)
        assert parent.take(0, len(body)) == body and parent.taken == 1
        worker.parent_read(parent.taken)  # what a FREE frame does
        position = worker.put(body[::-1])
        assert position == 1 << 16  # the ring was empty: offset 0 of the next lap
        assert parent.take(position, len(body)) == body[::-1]
        with pytest.raises(ValueError, match="outside the ring"):
            parent.take(60000, 10000)
    finally:
        worker.close()
        parent.close()
