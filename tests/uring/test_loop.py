"""UringEventLoop as an asyncio loop: scheduling, threads, cancellation, shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import tempfile
import threading
import time
from typing import Any

import pytest

from aioduct.testing.nginx import deterministic_bytes

from .conftest import RunUring


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def proactor_of(loop: asyncio.AbstractEventLoop) -> Any:
    return loop._proactor  # type: ignore[attr-defined]


def test_call_soon_call_later_ordering_and_timers(run_uring: RunUring) -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        assert type(loop).__name__ == "UringEventLoop"
        order: list[str] = []
        done = loop.create_future()
        loop.call_later(0.05, order.append, "later-50ms")
        loop.call_later(0.02, order.append, "later-20ms")
        loop.call_soon(order.append, "soon-1")
        loop.call_soon(order.append, "soon-2")
        loop.call_at(loop.time() + 0.06, done.set_result, None)
        started = loop.time()
        await done
        elapsed = loop.time() - started
        assert 0.055 <= elapsed < 0.5, elapsed
        t0 = time.monotonic()
        await asyncio.sleep(0.03)
        assert 0.029 <= time.monotonic() - t0 < 0.3
        return order

    assert run_uring(main()) == ["soon-1", "soon-2", "later-20ms", "later-50ms"]


def test_callbacks_that_raise_cancelled_handles_and_many_cancelled_timers(
    run_uring: RunUring,
) -> None:
    """The loop's own turn (_run_once): a raising callback reaches the exception
    handler as the stock loop reports it, cancelled handles and timers never run, and
    a heap of mostly cancelled timers is rebuilt without them."""

    def boom() -> None:
        raise ValueError("boom")

    async def main() -> tuple[list[dict[str, Any]], list[str], int]:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        ran: list[str] = []
        failing = loop.call_soon(boom)
        loop.call_soon(ran.append, "after")
        loop.call_soon(ran.append, "cancelled").cancel()
        timers = [loop.call_later(60 + i, ran.append, "never") for i in range(300)]
        for timer in timers[:200]:
            timer.cancel()
        loop.call_later(0.01, ran.append, "timer")
        await asyncio.sleep(0.05)
        for timer in timers[200:]:
            timer.cancel()
        await asyncio.sleep(0)
        assert reported and reported[0]["handle"] is failing
        return reported, ran, len(loop._scheduled)  # type: ignore[attr-defined]

    reported, ran, left = run_uring(main())
    assert ran == ["after", "timer"]
    assert len(reported) == 1 and isinstance(reported[0]["exception"], ValueError)
    assert reported[0]["message"].startswith("Exception in callback ")
    assert "boom" in reported[0]["message"]
    assert left < 150  # the cancelled ones were dropped, not kept until due


def test_call_soon_threadsafe_wakes_an_idle_loop(run_uring: RunUring) -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[float] = loop.create_future()

        def from_thread() -> None:
            time.sleep(0.05)
            loop.call_soon_threadsafe(fut.set_result, time.monotonic())

        threading.Thread(target=from_thread).start()
        sent = await fut  # nothing else is scheduled: the loop sleeps until woken
        return time.monotonic() - sent

    assert run_uring(main()) < 0.2


def test_executor_and_getaddrinfo_are_not_frozen_by_the_ring(run_uring: RunUring) -> None:
    # liburing's own waits hold the GIL; the loop must sleep in a call that releases it, or these
    # threads would not progress while the loop is idle.
    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        infos, _ = await asyncio.gather(
            loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM),
            loop.run_in_executor(None, time.sleep, 0.05),
        )
        elapsed = time.monotonic() - start
        assert infos and all(info[4][1] == 80 for info in infos)

        counted = 0
        stop = threading.Event()

        def spin() -> None:
            nonlocal counted
            while not stop.is_set():
                counted += 1

        thread = threading.Thread(target=spin)
        thread.start()
        await asyncio.sleep(0.1)  # the loop idles in the ring (GIL released): the thread must run
        stop.set()
        thread.join()
        return elapsed, counted

    elapsed, counted = run_uring(main())
    assert elapsed < 0.5, elapsed
    assert counted > 1000, counted


def test_sock_helpers_and_a_stream_server(run_uring: RunUring) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.readexactly(5)
            writer.write(data.upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        # a host name goes through getaddrinfo, as on the selector loops
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("localhost", port))
        await loop.sock_sendall(sock, b"hello")
        assert await loop.sock_recv(sock, 100) == b"HELLO"
        assert await loop.sock_recv(sock, 100) == b""
        sock.close()
        server.close()
        await server.wait_closed()

    run_uring(main())


def test_datagram_endpoint_round_trip(run_uring: RunUring) -> None:
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            self.transport.sendto(data[::-1], addr)  # type: ignore[attr-defined]

    class Client(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def datagram_received(self, data: bytes, addr: Any) -> None:
            self.got.set_result(data)

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        server, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        port = server.get_extra_info("sockname")[1]
        client, proto = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
        client.sendto(b"uring")
        data = await proto.got
        client.close()
        server.close()
        await asyncio.sleep(0)  # let connection_lost run: the sockets close there
        return data

    assert run_uring(main()) == b"gniru"


MODES = ["defer", "coop", "plain"]


@pytest.mark.parametrize("mode", MODES)
def test_cancelled_recv_whose_completion_arrives_later(run_uring: RunUring, mode: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        proactor = proactor_of(loop)
        a, b = socket.socketpair()
        a.setblocking(False)
        with a, b:
            fut = proactor.recv(a, 100)
            await asyncio.sleep(0.01)  # the recv is now in the kernel
            b.send(b"early")  # ... and completes before the cancel request reaches it
            assert fut.cancel()
            assert proactor.in_flight == 1  # the buffer stays pinned until the CQE
            for _ in range(100):
                if proactor.in_flight == 0:
                    break
                await asyncio.sleep(0.001)
            assert proactor.in_flight == 0
            assert fut.cancelled()
            # The socket keeps working after a cancellation that lost the race. In
            # "defer" mode the recv only runs when the loop collects completions, so the
            # cancel may win instead and leave the bytes in the socket.
            b.send(b"next")
            got = await loop.sock_recv(a, 100)
            assert got == b"next" or (mode == "defer" and got == b"earlynext")

            # Cancelled before any submission: withdrawn as a NOP, so it cannot
            # consume data meant for the next reader.
            fut = proactor.recv(a, 100)
            fut.cancel()
            b.send(b"kept")
            assert await loop.sock_recv(a, 100) == b"kept"

            # A recv cancelled while waiting in the kernel completes with ECANCELED.
            task = loop.create_task(loop.sock_recv(a, 100))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.01)
            assert proactor.in_flight == 0

    run_uring(main(), mode=mode)


def test_a_cancelled_accept_that_succeeded_closes_its_socket(run_uring: RunUring) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        proactor = proactor_of(loop)
        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.setblocking(False)
            fut = proactor.accept(listener)
            await asyncio.sleep(0.01)
            baseline = open_fds()
            client = socket.create_connection(listener.getsockname())  # accepted in-kernel
            fut.cancel()
            for _ in range(100):
                if proactor.in_flight == 0:
                    break
                await asyncio.sleep(0.001)
            assert proactor.in_flight == 0
            assert open_fds() == baseline + 1  # only `client`: the accepted fd was closed
            client.close()

    run_uring(main())


def test_close_with_operations_in_flight(run_uring: RunUring) -> None:
    from aioduct.uring.loop import new_event_loop

    baseline = open_fds()
    loop = new_event_loop()
    pairs = [socket.socketpair() for _ in range(5)]
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)

    tasks: list[asyncio.Task[Any]] = []

    async def start() -> None:
        for a, _b in pairs:
            a.setblocking(False)
            tasks.append(loop.create_task(loop.sock_recv(a, 1024)))
        tasks.append(loop.create_task(loop.sock_accept(listener)))
        await asyncio.sleep(0.02)

    loop.run_until_complete(start())
    proactor = proactor_of(loop)
    assert proactor.in_flight == 6
    for task in tasks:  # left pending on purpose: no "Task was destroyed" noise
        task._log_destroy_pending = False  # type: ignore[attr-defined]
    started = time.monotonic()
    loop.close()
    assert time.monotonic() - started < 1.0
    assert proactor.in_flight == 0
    for a, b in pairs:
        a.close()
        b.close()
    listener.close()
    assert open_fds() == baseline  # ring and self-pipe closed too


@pytest.mark.parametrize("pause_every", [1_000_000, 1])
def test_flow_control_with_a_buffered_protocol(run_uring: RunUring, pause_every: int) -> None:
    """Pausing and resuming a BufferedProtocol loses and reorders nothing, also while
    the transport grows its receive buffers (pausing after every single delivery)."""
    payload = deterministic_bytes(8 * 1024 * 1024 + 17)
    grown: list[int] = []

    class Collector(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.buf = bytearray(32 * 1024)
            self.chunks: list[bytes] = []
            self.size = 0
            self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport

        def get_buffer(self, sizehint: int) -> bytearray:
            return self.buf

        def buffer_updated(self, nbytes: int) -> None:
            self.chunks.append(bytes(self.buf[:nbytes]))
            before, self.size = self.size, self.size + nbytes
            grown.append(len(self.transport._data))
            if before // pause_every != self.size // pause_every:  # pause a while
                self.transport.pause_reading()
                asyncio.get_running_loop().call_later(0.002, self.transport.resume_reading)

        def eof_received(self) -> bool:
            self.done.set_result(b"".join(self.chunks))
            return False

    async def main() -> bytes:
        loop = asyncio.get_running_loop()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(payload)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, proto = await loop.create_connection(Collector, "127.0.0.1", port)
        sock = transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        data = await proto.done
        transport.close()
        server.close()
        await server.wait_closed()
        return data

    assert run_uring(main()) == payload
    assert max(grown) > 64 * 1024  # the receive buffers grew on the way


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals: main thread"
)
def test_signal_handlers(run_uring: RunUring) -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        got: asyncio.Future[int] = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, got.set_result, 42)
        threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        value = await got
        assert loop.remove_signal_handler(signal.SIGUSR1)
        assert not loop.remove_signal_handler(signal.SIGUSR1)
        with pytest.raises(TypeError, match="coroutines cannot be used"):
            loop.add_signal_handler(signal.SIGUSR1, asyncio.sleep, 1)
        return value

    assert run_uring(main()) == 42
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_policy_and_run_helper() -> None:
    from aioduct import uring

    if not uring.is_available():
        pytest.skip(uring.unavailable_reason() or "")
    from aioduct.uring.loop import UringEventLoop, UringEventLoopPolicy, run

    async def which() -> str:
        return type(asyncio.get_running_loop()).__name__

    assert run(which()) == "UringEventLoop"
    loop = UringEventLoopPolicy().new_event_loop()
    try:
        assert isinstance(loop, UringEventLoop)
        assert loop.run_until_complete(which()) == "UringEventLoop"
    finally:
        loop.close()
    loop = uring.new_event_loop()
    loop.close()


@pytest.mark.parametrize("mode", MODES)
def test_created_on_one_thread_run_on_another(run_uring: RunUring, mode: str) -> None:
    """A loop may be built by one thread, run by another and closed by the first."""
    from aioduct.uring.loop import new_event_loop

    run_uring(asyncio.sleep(0))  # skips here when io_uring is unusable
    baseline = open_fds()
    loop = new_event_loop(mode=mode)
    a, b = socket.socketpair()
    a.setblocking(False)
    results: list[object] = []

    async def work() -> bytes:
        pending = loop.create_task(loop.sock_recv(a, 10))
        pending._log_destroy_pending = False  # type: ignore[attr-defined]
        b.send(b"hi")
        got = await asyncio.wait_for(pending, 2)
        leftover = loop.create_task(loop.sock_recv(a, 10))
        leftover._log_destroy_pending = False  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)  # leaves a recv in flight for close()
        return got

    thread = threading.Thread(target=lambda: results.append(loop.run_until_complete(work())))
    thread.start()
    thread.join(5)
    assert results == [b"hi"]
    started = time.monotonic()
    loop.close()  # from the creating thread, with a recv still in flight
    assert time.monotonic() - started < 1.0
    a.close()
    b.close()
    assert open_fds() == baseline


@pytest.mark.parametrize("eager_send", [True, False])
def test_stream_protocol_sendfile_and_ring_sends(
    run_uring: RunUring, monkeypatch: pytest.MonkeyPatch, eager_send: bool
) -> None:
    """A plain Protocol gets bytes; big writes and sendfile go through (partly) the ring."""
    from aioduct.uring.loop import _UringSocketTransport

    monkeypatch.setattr(_UringSocketTransport, "eager_send", eager_send)
    payload = deterministic_bytes(3 * 1024 * 1024 + 5)

    class Plain(asyncio.Protocol):
        def __init__(self) -> None:
            self.chunks: list[bytes] = []
            self.eof: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def data_received(self, data: bytes) -> None:
            assert type(data) is bytes
            self.chunks.append(data)

        def eof_received(self) -> bool:
            self.eof.set_result(None)
            return False

    async def main() -> tuple[bytes, bytes, int]:
        loop = asyncio.get_running_loop()

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read())  # everything until our write_eof()
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, proto = await loop.create_connection(Plain, "127.0.0.1", port)
        transport.write(payload[:1000])
        transport.writelines([payload[1000:2_000_000], payload[2_000_000:]])
        with tempfile.TemporaryFile() as f:
            f.write(b"from a file")
            f.seek(0)
            sent = await loop.sendfile(transport, f)
        transport.write_eof()
        await proto.eof
        transport.close()
        server.close()
        await server.wait_closed()
        echoed = b"".join(proto.chunks)
        return echoed[: len(payload)], echoed[len(payload) :], sent

    body, tail, sent = run_uring(main())
    assert body == payload and tail == b"from a file" and sent == 11


@pytest.mark.parametrize("mode", MODES)
def test_an_idle_loop_is_woken_by_the_data_itself(run_uring: RunUring, mode: str) -> None:
    """Bytes arriving at an idle loop end its sleep: not a timer, not a late notification.

    The peer sends each message only once the loop is asleep (bounded by a timer an hour
    away), then waits for the echo. Every sleep must end with a completion in hand; a
    sleep that ran into its timeout, or ended empty-handed (as with the eventfd a
    "defer" ring signals ~14 ms late and again for every completion), shows in the stats.
    """
    rounds = 20

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        stats = proactor_of(loop).sleep_stats
        loop.call_later(3600, lambda: None)  # the loop's next timer: far away

        class Echo(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                self.transport.write(data)  # type: ignore[attr-defined]

        ours, peer = socket.socketpair()
        ours.setblocking(False)
        transport, _ = await loop.create_connection(Echo, sock=ours)

        def talk() -> None:
            for i in range(rounds):
                while not stats.asleep:  # until the loop sleeps again
                    time.sleep(0.0005)
                peer.sendall(b"%d" % i)
                assert peer.recv(16) == b"%d" % i

        before = (stats.sleeps, stats.woken_by_completion)
        await loop.run_in_executor(None, talk)
        transport.close()
        peer.close()
        slept = stats.sleeps - before[0]
        woken = stats.woken_by_completion - before[1]
        return slept, woken, stats.timed_out, stats.empty

    slept, woken, timed_out, empty = run_uring(main(), mode=mode)
    assert slept >= 20
    assert (timed_out, empty) == (0, 0)
    assert woken == slept
