"""An idle local-engine worker picks a job up because it arrived, not when a timer fires.

The worker is the real one (:mod:`aioduct.local.worker`): its io_uring loop, the link it
reads job frames from, its job runner and pipeline. It runs in a thread here so the test
can read its loop's :class:`~aioduct.uring.proactor.SleepStats` and act as its parent.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import pytest

from aioduct import ClientConfig, Job, uring
from aioduct.local import wire
from aioduct.runner import RunnerSettings
from aioduct.testing.nginx import SMALL_BODY, Nginx


def _frames(sock: socket.socket, reader: wire.FrameReader, kind: int) -> Any:
    while True:
        data = sock.recv(1 << 16)
        assert data, "the worker closed its socket"
        for got, payload in reader.feed(data):
            if got == kind:
                return payload


@pytest.mark.parametrize("mode", ["defer", "coop", "plain"])
def test_an_idle_worker_picks_up_each_job_without_a_timer(
    nginx: Nginx, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = uring.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    from aioduct.local.worker import _Worker
    from aioduct.uring.loop import new_event_loop

    hello = wire.Hello(
        worker=0,
        cpu=None,
        config=ClientConfig(),
        settings=RunnerSettings(concurrency=1),
        heartbeat=None,  # no timer of its own: only the jobs can wake it
    )
    parent, child = socket.socketpair()
    loops: list[Any] = []
    started = threading.Event()

    def run_worker() -> None:
        loop = new_event_loop(mode=mode)
        loops.append(loop)
        asyncio.set_event_loop(loop)
        started.set()
        try:
            loop.run_until_complete(_Worker(hello, "uring", loop).serve(child, []))
        finally:
            loop.close()

    thread = threading.Thread(target=run_worker, daemon=True)
    thread.start()
    started.wait(30)
    stats = loops[0]._proactor.sleep_stats
    reader = wire.FrameReader()
    with parent:
        assert _frames(parent, reader, wire.READY).runtime == "uring"
        results = []
        for seq in range(1, 9):
            while not stats.asleep:  # hand each job to a worker that went idle
                time.sleep(0.0005)
            out = bytearray()
            job = Job(url=nginx.http_url + "/small", id=seq)
            wire.append_frame(out, wire.JOBS, wire.JobBatch(seqs=[seq], jobs=[job]))
            parent.sendall(out)
            results.extend(_frames(parent, reader, wire.RESULTS).results)
        out = bytearray()
        wire.append_frame(out, wire.STOP, None)
        parent.sendall(out)
        thread.join(30)
    assert [(r.id, r.status, r.body) for r in results] == [
        (seq, 200, SMALL_BODY) for seq in range(1, 9)
    ]
    # Every sleep ended because something completed (the job frame arriving, the
    # connection, the response): none ran into a timer or ended with nothing to do.
    assert stats.sleeps >= 8
    assert (stats.timed_out, stats.empty) == (0, 0)
