"""The io_uring loop receives a large body straight into the caller's buffer with one
``MSG_WAITALL`` receive (aioduct.runtimes.uring.UringStream): the buffer belongs to the
kernel until that receive's completion is reaped, whatever ends the read -- a read
timeout, a total timeout, a cancelled task, a reset -- and ``read_timeout`` stays a
limit on silence although the receive shows no progress before it completes.

The ownership checks are exact, not timing-based: a BodyBuffers that, whenever a body
buffer is given back, looks through the ring's in-flight operations for one whose
buffer overlaps it."""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import aioduct
from aioduct import uring
from aioduct.bodybuffers import BodyBuffers
from aioduct.testing.server import ScriptServer

from .large_bodies import serve


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    reason = uring.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    from aioduct.uring.loop import new_event_loop

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())


def _span(view: memoryview) -> tuple[int, int]:
    start = ctypes.addressof(ctypes.c_char.from_buffer(view))
    return start, start + view.nbytes


class CheckedBuffers(BodyBuffers):
    """BodyBuffers that fail the test if a buffer comes back while a ring operation
    may still write into it (and count how often one came back at all)."""

    def __init__(self) -> None:
        super().__init__()
        self.returned = 0
        self.early: list[str] = []

    def _check(self, view: memoryview) -> None:
        self.returned += 1
        start, end = _span(view)
        proactor = asyncio.get_running_loop()._proactor  # type: ignore[attr-defined]
        for op in proactor._ops.values():
            if op.view is None or op.view.readonly or not op.view.nbytes:
                continue
            op_start, op_end = _span(op.view)
            if op_start < end and start < op_end:
                self.early.append(f"{op!r} still writes into a buffer given back")

    # (BodyBuffers.finish gives its buffer back through abandon too.)
    def abandon(self, view: memoryview) -> None:
        self._check(view)
        super().abandon(view)


def install(client: aioduct.Client) -> CheckedBuffers:
    buffers = CheckedBuffers()
    client._engine.body_buffers = buffers  # type: ignore[union-attr]
    return buffers


@pytest.fixture
def settles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How often read_into had to wait for an interrupted direct receive: proof that
    a test reached the state where the kernel still owned the buffer."""
    from aioduct.runtimes.uring import UringStream

    calls: list[int] = []
    settle = UringStream._settle

    async def counted(self: UringStream) -> None:
        calls.append(1)
        await settle(self)

    monkeypatch.setattr(UringStream, "_settle", counted)
    return calls


def test_read_timeout_mid_body_gives_the_buffer_back_only_when_the_kernel_has(
    script_server: ScriptServer,
) -> None:
    bodies = serve(script_server)

    async def main() -> None:
        async with aioduct.Client(read_timeout=0.3) as client:
            buffers = install(client)
            with pytest.raises(aioduct.ReadTimeout, match="reading the body"):
                await client.get(script_server.url + "/stall")
            # The stalled server resumes while these are received into the same
            # (pooled) buffer: its bytes must not land there.
            for key, body in bodies.items():
                assert (await client.get(script_server.url + "/body?" + key)).content == body
            assert buffers.returned == 1 + len(bodies)
            assert buffers.early == []

    run(main)


def test_a_cancelled_read_waits_for_the_kernel_before_giving_the_buffer_back(
    script_server: ScriptServer, settles: list[int]
) -> None:
    bodies = serve(script_server)

    async def main() -> None:
        async with aioduct.Client(read_timeout=5) as client:
            buffers = install(client)
            for _ in range(3):
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(client.get(script_server.url + "/stall"), 0.3)
            for key, body in bodies.items():
                assert (await client.get(script_server.url + "/body?" + key)).content == body
            assert buffers.early == []
            assert buffers.returned == 3 + len(bodies)

    run(main)
    assert len(settles) >= 3  # each cancellation found the direct receive in flight


def test_a_total_timeout_of_a_steady_body_gives_the_buffer_back_safely(
    script_server: ScriptServer, settles: list[int]
) -> None:
    bodies = serve(script_server)

    async def main() -> None:
        # The read timer finds progress each time (the body is steady), so the direct
        # receive is re-armed; the total deadline then ends the read with it in flight.
        async with aioduct.Client(read_timeout=0.1, timeout=0.5) as client:
            buffers = install(client)
            with pytest.raises(aioduct.TimeoutError):
                await client.get(script_server.url + "/steady")
            assert buffers.early == []
        async with aioduct.Client() as client:
            assert (await client.get(script_server.url + "/body?1")).content == bodies["1"]

    run(main)
    assert settles


def test_a_slow_but_steady_body_is_not_silence(script_server: ScriptServer) -> None:
    bodies = serve(script_server)

    async def main() -> None:
        # One receive for the whole body shows no progress until it completes: each
        # time the read timer expires it is interrupted, finds bytes, and goes on.
        async with aioduct.Client(read_timeout=0.3) as client:
            buffers = install(client)
            assert (await client.get(script_server.url + "/steady")).content == bodies["0"]
            with pytest.raises(aioduct.ReadTimeout):
                await client.get(script_server.url + "/stall")
            assert buffers.early == []

    run(main)


def test_closing_the_client_mid_body(script_server: ScriptServer, settles: list[int]) -> None:
    serve(script_server)

    async def main() -> None:
        client = aioduct.Client(read_timeout=5)
        buffers = install(client)
        task = asyncio.create_task(client.get(script_server.url + "/stall"))
        await asyncio.sleep(0.3)
        await client.aclose()
        task.cancel()
        with pytest.raises((asyncio.CancelledError, aioduct.TransportError)):
            await task
        assert buffers.early == []

    run(main)
