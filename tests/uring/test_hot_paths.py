"""The io_uring loop's per-request paths, on real sockets: reaping with dispatch
(``Ring.dispatch``), re-armed receives, the transport's direct ``send()`` and its
fallback to the ring, and ``call_soon``/the ready queue."""

from __future__ import annotations

import asyncio
import contextvars
import socket
from collections.abc import Callable
from typing import Any

import pytest

from aioduct import uring
from aioduct.testing.nginx import deterministic_bytes

from .conftest import RunUring

pytestmark = pytest.mark.skipif(
    not uring.is_available(), reason=uring.unavailable_reason() or "io_uring is usable"
)


class Entry:
    """A registry entry as Ring.dispatch sees it: ``direct`` is a callable or None."""

    def __init__(self, direct: Callable[[int], object] | None) -> None:
        self.direct = direct


def test_dispatch_calls_direct_entries_and_hands_the_rest_on(ring: Any) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        got: list[tuple[str, int]] = []
        failures: list[tuple[str, Any]] = []

        def boom(res: int) -> None:
            raise ValueError(f"boom {res}")

        direct = Entry(lambda res: got.append(("direct", res)))
        slow = Entry(None)
        raising = Entry(boom)
        table: dict[int, Any] = {10: direct, 11: slow, 12: raising}
        ring.nop(12)  # its callback raises: reported, and the others still delivered
        ring.nop(99)  # nobody waits for it: dropped
        data, buf = memoryview(b"abc"), memoryview(bytearray(8))  # pinned until reaped
        ring.send(11, b.fileno(), data)
        ring.recv(10, a.fileno(), buf)
        ring.submit()
        seen = 0
        while seen < 4:
            count = ring.dispatch(
                table,
                lambda entry, res: got.append(("slow", res)) if entry is slow else None,
                lambda exc, entry: failures.append((str(exc), entry)),
            )
            if not count:
                assert ring.wait(2.0), "completions did not arrive"
            seen += count
        assert sorted(got) == [("direct", 3), ("slow", 3)] and bytes(buf[:3]) == b"abc"
        assert failures == [("boom 0", raising)]
        assert table == {}  # every entry popped, delivered or not


def test_dispatch_lets_system_exit_through(ring: Any) -> None:
    def leave(res: int) -> None:
        raise SystemExit(3)

    ring.nop(5)
    ring.submit()
    ring.wait(2.0)
    with pytest.raises(SystemExit):
        ring.dispatch({5: Entry(leave)}, lambda entry, res: None, lambda exc, entry: None)


class Receiving:
    """A socket pair whose ``a`` end has had one receive through the proactor (of
    ``b"one"``, into ``buffers[0]``); ``got`` collects every completion's result."""

    def __init__(self, proactor: Any) -> None:
        self.a, self.b = socket.socketpair()
        self.a.setblocking(False)
        self.got: list[int] = []
        self.arrived = asyncio.Event()
        self.buffers = [memoryview(bytearray(16)), memoryview(bytearray(16))]
        self.op = proactor.recv_into_cb(self.a, self.buffers[0], self.on_recv)

    def on_recv(self, res: int) -> None:
        self.got.append(res)
        self.arrived.set()

    @classmethod
    async def start(cls, proactor: Any) -> Receiving:
        r = cls(proactor)
        r.b.send(b"one")
        await asyncio.wait_for(r.arrived.wait(), 5)
        return r


async def settled(proactor: Any) -> None:
    """Wait (up to ~1 s) until no operation is in flight, then check that none is."""
    for _ in range(1000):
        if proactor.in_flight == 0:
            break
        await asyncio.sleep(0.001)
    assert proactor.in_flight == 0


def test_a_rearmed_receive_keeps_its_id_and_can_be_cancelled(run_uring: RunUring) -> None:
    """recv_again reuses the op (and its user_data); a cancel after the re-arm
    withdraws that receive, whose callback then never runs, and a new one works."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        proactor: Any = loop._proactor  # type: ignore[attr-defined]
        r = await Receiving.start(proactor)
        with r.a, r.b:
            op, got, arrived, buffers, b = r.op, r.got, r.arrived, r.buffers, r.b
            assert got == [3] and bytes(buffers[0][:3]) == b"one"
            ud = op.ud
            again = proactor.recv_again(op, buffers[1])
            assert again is op and op.ud == ud and proactor.in_flight == 1
            arrived.clear()
            b.send(b"two")
            await asyncio.wait_for(arrived.wait(), 5)
            assert got == [3, 3] and bytes(buffers[1][:3]) == b"two"

            proactor.recv_again(op, buffers[0])
            assert op.cancel()
            await settled(proactor)
            b.send(b"three")
            await asyncio.sleep(0.01)
            assert got == [3, 3]  # the cancelled receive delivered nothing
            # A cancelled op is never re-armed: recv_again starts a new one.
            arrived.clear()
            fresh = proactor.recv_again(op, buffers[1])
            assert fresh is not op and fresh.ud != ud
            await asyncio.wait_for(arrived.wait(), 5)
            assert got[-1] > 0 and bytes(buffers[1][: got[-1]]).endswith(b"three")

    run_uring(main())


class Collect(asyncio.Protocol):
    def __init__(self) -> None:
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


async def _connected_transport(sndbuf: int | None = None) -> tuple[Any, Collect, socket.socket]:
    """A _UringSocketTransport on one end of a TCP connection; the other end returned."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        client = socket.socket()
        if sndbuf is not None:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        client.setblocking(False)
        await loop.sock_connect(client, listener.getsockname())
        peer, _ = listener.accept()
    if sndbuf is not None:
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sndbuf)
    transport, protocol = await loop.connect_accepted_socket(Collect, client)
    assert type(transport).__name__ == "_UringSocketTransport"
    return transport, protocol, peer


async def _read_exactly(peer: socket.socket, count: int) -> bytes:
    loop = asyncio.get_running_loop()
    peer.setblocking(False)
    out = bytearray()
    while len(out) < count:
        chunk = await loop.sock_recv(peer, 1 << 20)
        assert chunk, f"EOF after {len(out)} of {count} bytes"
        out += chunk
    return bytes(out)


def test_a_small_write_is_sent_directly(run_uring: RunUring) -> None:
    async def main() -> None:
        transport, _protocol, peer = await _connected_transport()
        with peer:
            transport.write(b"GET / HTTP/1.1\r\n\r\n")
            # The kernel took it all: no ring operation, nothing buffered.
            assert transport._write_fut is None and transport.get_write_buffer_size() == 0
            assert await _read_exactly(peer, 18) == b"GET / HTTP/1.1\r\n\r\n"
            transport.close()

    run_uring(main())


@pytest.mark.parametrize("eager_send", [True, False])
def test_a_partial_direct_send_continues_in_the_ring_in_order(
    run_uring: RunUring, monkeypatch: pytest.MonkeyPatch, eager_send: bool
) -> None:
    """A write the socket buffer cannot hold: what send() took went, the rest is a ring
    send, and writes made meanwhile (bytes, bytearray, a non-contiguous memoryview)
    follow it in order; flow control pauses the protocol above the high-water mark."""
    from aioduct.uring.loop import _UringSocketTransport

    monkeypatch.setattr(_UringSocketTransport, "eager_send", eager_send)
    big = deterministic_bytes(2 * 1024 * 1024 + 3)
    tail = bytearray(b"tail-bytearray")
    strided = memoryview(b"0123456789")[::2]

    async def main() -> None:
        transport, protocol, peer = await _connected_transport(sndbuf=16 * 1024)
        paused: list[bool] = []
        protocol.pause_writing = lambda: paused.append(True)  # type: ignore[method-assign]
        protocol.resume_writing = lambda: paused.append(False)  # type: ignore[method-assign]
        with peer:
            transport.write(big)  # the peer reads nothing yet: only part fits
            assert transport._write_fut is not None
            transport.write(b"next-bytes")
            transport.write(tail)
            transport.write(strided)
            tail[:4] = b"XXXX"  # the transport copied it: later changes do not leak out
            assert paused[:1] == [True]
            expected = big + b"next-bytes" + b"tail-bytearray" + b"02468"
            assert await _read_exactly(peer, len(expected)) == expected
            for _ in range(1000):
                if transport._write_fut is None:
                    break
                await asyncio.sleep(0.001)
            assert transport._write_fut is None and transport.get_write_buffer_size() == 0
            assert paused[-1] is False
            transport.close()
            assert await protocol.lost is None

    run_uring(main())


def test_writes_after_close_or_a_reset_are_dropped_without_raising(run_uring: RunUring) -> None:
    async def main() -> None:
        transport, protocol, peer = await _connected_transport()
        with peer:
            transport.close()
            transport.write(b"after close")  # ignored, like the stock transport
            assert await protocol.lost is None
            peer.setblocking(False)
            # EOF, and none of the dropped bytes before it.
            assert await asyncio.get_running_loop().sock_recv(peer, 100) == b""

    async def reset() -> None:
        transport, protocol, peer = await _connected_transport()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        peer.close()  # RST
        exc = await asyncio.wait_for(protocol.lost, 5)  # the receive in flight sees it
        assert isinstance(exc, ConnectionResetError)
        transport.write(b"after the reset")  # dropped: no exception

    async def reset_seen_by_write() -> None:
        from aioduct.uring.loop import _UringSocketTransport

        transport, protocol, peer = await _connected_transport()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        transport.pause_reading()  # no receive in flight: the direct send meets the reset
        peer.close()
        await asyncio.sleep(0.05)
        assert isinstance(transport, _UringSocketTransport)
        transport.write(b"x")
        exc = await asyncio.wait_for(protocol.lost, 5)
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError))

    run_uring(main())
    run_uring(reset())
    run_uring(reset_seen_by_write())


def test_call_soon_arguments_contexts_and_closed_or_debug_loops(run_uring: RunUring) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def main() -> list[tuple[Any, ...]]:
        loop = asyncio.get_running_loop()
        calls: list[tuple[Any, ...]] = []
        done = loop.create_future()
        context = contextvars.copy_context()
        context.run(var.set, "given")
        loop.call_soon(lambda: calls.append(()))
        loop.call_soon(lambda a: calls.append((a, var.get())), "one")
        loop.call_soon(lambda a, b: calls.append((a, b)), "one", "two")
        loop.call_soon(lambda a: calls.append((a, var.get())), "ctx", context=context)
        cancelled = loop.call_soon(calls.append, ("never",))
        cancelled.cancel()
        handle = loop.call_soon(done.set_result, None)
        assert isinstance(handle, asyncio.Handle) and not handle.cancelled()
        await done
        loop.set_debug(True)
        debug_handle = loop.call_soon(calls.append, ("debug",))
        assert debug_handle._source_traceback  # type: ignore[attr-defined]
        loop.set_debug(False)
        await asyncio.sleep(0)
        return calls

    assert run_uring(main()) == [
        (),
        ("one", "unset"),
        ("one", "two"),
        ("ctx", "given"),
        ("debug",),
    ]

    from aioduct.uring.loop import new_event_loop

    loop = new_event_loop()
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(print)


def test_cancelling_a_copied_receive_before_submission_spares_the_next_socket(
    run_uring: RunUring,
) -> None:
    """recv_again's entry is a copy, which cannot be rewritten into a NOP: cancelled
    before the loop submitted it, it is handed to the kernel at once (its fd still
    the old socket's) and cancelled there -- so a socket that reuses the fd number
    right after the close keeps its bytes."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        proactor: Any = loop._proactor  # type: ignore[attr-defined]
        r = await Receiving.start(proactor)
        a, b, op, got, arrived, buffers = r.a, r.b, r.op, r.got, r.arrived, r.buffers
        for round_ in range(3):  # the copies are made once, then reused
            generation = proactor._ring.generation
            proactor.recv_again(op, buffers[(round_ + 1) % 2])
            assert op.sqe is None and op.gen == generation  # queued, not submitted
            assert op.cancel()
            assert proactor._ring.generation > generation  # submitted by the cancel
            await settled(proactor)
            op = proactor.recv_into_cb(a, buffers[0], r.on_recv)
            b.send(b"again")
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 5)
        assert got == [3, 5, 5, 5]
        generation = proactor._ring.generation
        proactor.recv_again(op, buffers[1])
        assert op.cancel() and proactor._ring.generation > generation
        fd = a.fileno()
        a.close()
        b.close()
        c, d = socket.socketpair()  # (most likely c takes fd's number)
        with c, d:
            d.send(b"for c")
            for _ in range(20):
                await asyncio.sleep(0.001)
            c.setblocking(False)
            assert c.recv(100) == b"for c", f"fd {fd} reused as {c.fileno()}"
        assert got == [3, 5, 5, 5]

    run_uring(main())


def test_a_copied_receive_waits_for_room_in_a_full_queue() -> None:
    """recv_again into a full submission queue hands the queue to the kernel first."""
    reason = uring.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    from aioduct.uring._ring import IGNORED
    from aioduct.uring.proactor import UringProactor

    proactor = UringProactor(2)
    a, b = socket.socketpair()
    a.setblocking(False)
    got: list[int] = []
    buffers = [memoryview(bytearray(8)), memoryview(bytearray(8))]
    try:

        def wait_for(count: int) -> None:
            for _ in range(100):
                if len(got) >= count:
                    return
                proactor.select(0.05)
            raise AssertionError(f"{got} after 5 s")

        op = proactor.recv_into_cb(a, buffers[0], got.append)
        b.send(b"x")
        wait_for(1)
        proactor._ring.nop(IGNORED)
        proactor._ring.nop(IGNORED)  # the queue (2 entries) is full now
        assert proactor._ring.pending() == 2
        assert proactor.recv_again(op, buffers[1]) is op
        b.send(b"yz")
        wait_for(2)
        assert got == [1, 2] and bytes(buffers[1][:2]) == b"yz"
    finally:
        proactor.close()
        a.close()
        b.close()


def test_a_callback_replaced_in_flight_gets_the_completion(run_uring: RunUring) -> None:
    """An op's callback may be swapped while it is in flight (a transport redirecting
    a receive it interrupts): the completion goes to the new one."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        proactor: Any = loop._proactor  # type: ignore[attr-defined]
        a, b = socket.socketpair()
        a.setblocking(False)
        with a, b:
            old: list[int] = []
            new: list[int] = []
            arrived = asyncio.Event()
            buf = memoryview(bytearray(8))
            op = proactor.recv_into_cb(a, buf, old.append)
            await asyncio.sleep(0.01)  # in the kernel now
            op.callback = lambda res: (new.append(res), arrived.set())
            b.send(b"abc")
            await asyncio.wait_for(arrived.wait(), 5)
            assert old == [] and new == [3]

    run_uring(main())
