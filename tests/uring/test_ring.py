"""The liburing wrapper on its own: prepare, submit, reap, cancel, neutralize."""

from __future__ import annotations

import errno
import select
import socket
import threading
from typing import Any

import pytest

from aioduct import uring

pytestmark = pytest.mark.skipif(
    not uring.is_available(), reason=uring.unavailable_reason() or "io_uring is usable"
)


def wait_for(ring: Any, count: int, timeout: float = 2.0) -> dict[int, int]:
    """Submit, then reap until ``count`` completions arrived (sleeping in the ring)."""
    done: dict[int, int] = {}
    ring.submit()
    while len(done) < count:
        if not ring.reap(done.__setitem__) and not ring.wait(timeout):
            raise AssertionError(f"only {done} of {count} completions within {timeout}s")
    return done


def test_nop_send_recv_and_generation(ring: Any) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        buf = bytearray(16)
        ring.nop(2)
        ring.send(3, b.fileno(), memoryview(b"hello"))
        ring.recv(4, a.fileno(), memoryview(buf))
        assert ring.pending() == 3 and ring.generation == 0
        assert wait_for(ring, 3) == {2: 0, 3: 5, 4: 5}
        assert ring.generation == 1 and ring.pending() == 0
        assert bytes(buf[:5]) == b"hello"


def test_cancel_a_pending_recv(ring: Any) -> None:
    from aioduct.uring._ring import IGNORED

    a, b = socket.socketpair()
    with a, b:
        buf = memoryview(bytearray(16))
        ring.recv(5, a.fileno(), buf)
        ring.submit()
        ring.cancel(5)
        done = wait_for(ring, 2)
        assert done == {5: -errno.ECANCELED, IGNORED: 0}


def test_a_neutralized_entry_never_reaches_its_socket(ring: Any) -> None:
    a, b = socket.socketpair()
    with a, b:
        buf = memoryview(bytearray(16))
        sqe = ring.recv(6, a.fileno(), buf)
        ring.neutralize(sqe, 6)  # withdrawn before the kernel saw it: completes as a NOP
        b.send(b"mine")
        assert wait_for(ring, 1) == {6: 0}
        assert a.recv(16) == b"mine"  # the data was not consumed by a withdrawn recv


def test_timeout_close_and_poll(ring: Any) -> None:
    from aioduct.uring._ring import make_timespec

    a, b = socket.socketpair()
    with a:
        ts = make_timespec(0.01)
        ring.timeout(7, ts)
        ring.poll(8, a.fileno(), select.POLLIN)
        ring.close_fd(9, b.detach())
        done = wait_for(ring, 3)
        assert done[7] == -errno.ETIME
        assert done[9] == 0
        assert done[8] & (select.POLLIN | select.POLLHUP)  # the peer's close made it readable


def test_errors_map_to_oserror_subclasses() -> None:
    from aioduct.uring._ring import os_error

    assert isinstance(os_error(-errno.ECONNREFUSED), ConnectionRefusedError)
    assert isinstance(os_error(-errno.ECONNRESET), ConnectionResetError)
    assert os_error(-errno.EBADF).errno == errno.EBADF


def test_sockaddr_conversion_explains_what_it_needs() -> None:
    from aioduct.uring._ring import make_sockaddr, make_timespec

    make_sockaddr(socket.AF_INET, ("127.0.0.1", 80))
    make_sockaddr(socket.AF_INET6, ("::1", 80, 0, 0))
    make_sockaddr(socket.AF_UNIX, "/tmp/x.sock")
    with pytest.raises(ValueError, match=r"needs a numeric IPv4 address.*resolve host names"):
        make_sockaddr(socket.AF_INET, ("example.com", 80))
    with pytest.raises(ValueError, match="filesystem AF_UNIX paths only"):
        make_sockaddr(socket.AF_UNIX, "\0abstract")
    with pytest.raises(ValueError, match=r"expected a \(host, port\) tuple"):
        make_sockaddr(socket.AF_INET, "127.0.0.1:80")
    with pytest.raises(ValueError, match="cannot be negative"):
        make_timespec(-1)


def test_a_closed_ring_refuses_work() -> None:
    from aioduct.uring._ring import Ring

    r = Ring(4)
    r.close()
    r.close()  # idempotent
    assert r.closed and r.submit() == 0 and r.reap(lambda ud, res: None) == 0
    with pytest.raises(RuntimeError, match="ring is closed"):
        r.nop(2)


@pytest.mark.parametrize("mode", ["defer", "coop", "plain"])
def test_a_completion_ends_a_wait_that_has_no_timeout(mode: str) -> None:
    # The wait has no timer to fall back on: only the completion itself can end it. (A
    # "defer" ring never polls readable for its completions, and the eventfd it can
    # signal arrived ~14 ms late on Linux 6.18; the kernel wakes a thread waiting in
    # io_uring_enter directly.)
    from aioduct.uring._ring import Ring

    r = Ring(8, mode)
    try:
        assert r.mode == mode
        a, b = socket.socketpair()
        with a, b:
            buf = memoryview(bytearray(8))
            done: dict[int, int] = {}
            sleeping = threading.Event()

            def drive() -> None:  # the ring's only issuer ("defer" rings have one)
                r.recv(2, a.fileno(), buf)
                r.submit()
                sleeping.set()
                if r.wait(None):
                    r.reap(done.__setitem__)

            driver = threading.Thread(target=drive, daemon=True)
            driver.start()
            sleeping.wait(30)
            b.send(b"ping")
            driver.join(30)  # a hang guard only: with no timeout it either wakes or hangs
            assert done == {2: 4}, f"{mode}: the completion did not end the wait"
            assert bytes(buf[:4]) == b"ping"
    finally:
        r.close()


def test_a_wait_with_nothing_in_flight_times_out(ring: Any) -> None:
    ring.submit()
    assert ring.wait(0.001) is False
    assert ring.reap(lambda ud, res: None) == 0


def test_mode_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    from aioduct.uring._ring import MODE_SWITCH, MODES, Ring

    with pytest.raises(ValueError, match="unknown ring mode 'fast'"):
        Ring(4, "fast")
    default = Ring(4)
    default.close()
    assert default.mode in MODES  # the cheapest the kernel accepts ("defer" on 6.1+)
    monkeypatch.setenv(MODE_SWITCH, "plain")
    pinned = Ring(4)
    pinned.close()
    assert pinned.mode == "plain"
