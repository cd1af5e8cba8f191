"""A local-engine worker process: one pinned CPU, one io_uring loop, one pool.

Started by :class:`~aioduct.LocalEngine` as ``python -m aioduct.local.worker FD PPID``
with one end of a Unix socket pair as ``FD``. It reads its :class:`~.wire.Hello` (config,
pacing, its shared-memory ring), pins itself to its CPU, builds its event loop, a client
and a :class:`~aioduct.runner.JobRunner` -- the same pipeline and job runner the send
engine uses in-process -- says ``READY``, then runs every job of each
:class:`~.wire.JobBatch` it receives as a task. The Results finished in one turn of the
loop go back as one :class:`~.wire.ResultBatch` frame (a small batch may wait up to a
millisecond for more, see :meth:`_Worker._turn_ended`), encoded in one call, so the parent
decodes them in one call too; large bodies go into the shared ring instead of the frame
(:mod:`.shm`), and a job with a ``process=`` function sends back only what the function
returned (:mod:`aioduct.processing`).

It never outlives its parent: ``PR_SET_PDEATHSIG`` kills it if the parent dies, and EOF
on the socket (the parent closed it or died) ends it too. ``SIGINT`` is ignored, because
Ctrl-C in a terminal reaches the whole process group and it is the parent's job to stop
its workers in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
from functools import partial

from .. import processing
from ..errors import ProcessError
from ..jobs import Result
from . import wire
from .pairs import PairWriter
from .shm import RingBodyBuffers, WorkerRegion

__all__ = ["main"]

_PR_SET_PDEATHSIG = 1
# glibc mallopt() parameters, and the values the worker sets them to (see _tune_malloc).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 << 20
_TRIM_THRESHOLD = 64 << 20
#: Longest a small batch of Results waits for more (see _Worker._turn_ended): about
#: what a worker takes for ten small requests.
_HOLD = 0.001


def _tune_malloc() -> None:
    """Keep freed megabyte buffers in the heap instead of handing them back to the kernel.

    A worker allocates and frees several body-sized buffers per response (the joined
    body, the Result frame, the part of it the socket did not take at once). With
    glibc's default, self-adjusting thresholds, whether freed ones stay reusable depends
    on the heap's layout: often the heap top is trimmed with ``brk`` (or the buffer was
    ``mmap``-ed) as soon as it is freed, and every response faults its buffers in again
    page by page. For 1 MB bodies that was ~300 page faults per response and more than
    half of the worker's CPU (~2.2 ms instead of ~1 ms). Fixing the thresholds at the
    ceilings glibc's own adjustment may grow them to (32 MiB mmap, 64 MiB trim) lets the
    freed memory be reused as is; at most 64 MiB of free heap top stays with the worker.
    No-op without glibc.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (musl and others: leave their malloc alone)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(0)


def _read_hello(sock: socket.socket) -> tuple[wire.Hello, list[tuple[int, object]]]:
    reader = wire.FrameReader()
    while True:
        data = sock.recv(1 << 16)
        if not data:
            os._exit(0)
        frames = reader.feed(data)
        if frames:
            kind, hello = frames[0]
            if kind != wire.HELLO or not isinstance(hello, wire.Hello):
                raise wire.WireError(f"expected a HELLO frame first, got kind {kind}")
            return hello, frames[1:]


def _fatal(sock: socket.socket, message: str) -> None:
    out = bytearray()
    wire.append_frame(out, wire.FATAL, message)
    with contextlib.suppress(OSError):
        sock.sendall(out)


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uring":
        from ..uring.loop import new_event_loop

        return new_event_loop()
    from ..client import new_event_loop as new_default_loop

    return new_default_loop()


class _Link(asyncio.Protocol):
    """The worker's end of the socket: Job frames in, Result frames out."""

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker
        self.reader = wire.FrameReader()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.worker.on_frames(self.reader.feed(data))

    def eof_received(self) -> bool:
        self.worker.parent_gone()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.parent_gone()


class _Worker:
    def __init__(self, hello: wire.Hello, loop_kind: str, loop: asyncio.AbstractEventLoop) -> None:
        from ..client import Client
        from ..engine import Engine
        from ..runner import JobRunner

        self.hello = hello
        self.loop_kind = loop_kind
        config = hello.config
        if config.cache is not None:  # each worker has its own store
            config = config.replace(cache=config.cache.for_worker(hello.worker))
        self.client = Client(config=config)
        self.runner = JobRunner(self.client, hello.settings, worker=hello.worker)
        self.out = bytearray()
        self.flush_scheduled = False
        #: Jobs received and not yet answered; when the first held Result was queued;
        #: the timer that sends a held batch (see _turn_ended).
        self.in_hand = 0
        self.first_at = 0.0
        self.hold_handle: asyncio.TimerHandle | None = None
        #: A batch this size goes at once; a smaller one may wait (see _turn_ended).
        #: Twice the concurrency: the parent's window is four times it, so the running
        #: and queued half keep the worker busy while the other half waits to be sent.
        #: At concurrency 10 that halves the frames per Result (10 -> ~22 Results a
        #: frame; the parent's CPU 7.4 -> 5.2 µs a Result in python -m benches, the
        #: requests/s within noise); at 50, a turn's 50 Results still go when the hold
        #: ends.
        self.batch_target = 2 * hello.settings.concurrency
        self.loop = loop
        self.link: _Link | None = None
        self.done: asyncio.Future[None] | None = None
        self.stopping = False
        self.beat_handle: asyncio.TimerHandle | None = None
        # The Results of this loop turn (or a few), sent as one batch by _flush.
        self.seqs: list[int] = []
        self.results: list[Result] = []
        self.bodies: list[tuple[int, int, int]] = []
        self.headers: list[list[int]] = []
        self.pairs = PairWriter()
        shared = hello.bodies if hello.settings.keep_body else None
        self.region = (
            WorkerRegion(shared.fd, shared.size, shared.threshold) if shared is not None else None
        )
        #: Large Content-Length bodies are received straight into the ring.
        self.ring_bodies = RingBodyBuffers(self.region) if self.region is not None else None
        if self.ring_bodies is not None and isinstance(self.client._engine, Engine):
            self.client._engine.body_buffers = self.ring_bodies
        #: The ring's bodies received and not yet claimed (the dict itself, for _emit).
        self.placed = self.ring_bodies.placed if self.ring_bodies is not None else {}
        #: process id -> (spec, function, or why it could not be imported)
        self.functions: dict[int, tuple[str, processing.Function | ProcessError]] = {}
        #: seq -> process id, for the jobs in hand that have one
        self.process_of: dict[int, int] = {}
        #: seq -> workers that died holding the job, for the jobs in hand sent again
        self.crashes_of: dict[int, int] = {}

    async def serve(self, sock: socket.socket, early: list[tuple[int, object]]) -> None:
        loop = self.loop
        self.done = loop.create_future()
        sock.setblocking(False)
        _, link = await loop.create_connection(lambda: _Link(self), sock=sock)
        self.link = link
        runtime = loop_name(loop)
        wire.append_frame(self.out, wire.READY, wire.Ready(pid=os.getpid(), runtime=runtime))
        self._flush()
        self.on_frames(early)
        if self.hello.heartbeat:
            self._beat()
        try:
            await self.done
        finally:
            if self.beat_handle is not None:
                self.beat_handle.cancel()
            if self.results and link.transport is not None and not link.transport.is_closing():
                self._flush()  # Results held back (see _turn_ended) are answers too
            elif self.hold_handle is not None:
                self.hold_handle.cancel()
            await self.runner.withdraw()
            await self.client.aclose()
            if link.transport is not None:
                link.transport.close()
            if self.region is not None:
                self.region.close()

    def on_frames(self, frames: list[tuple[int, object]]) -> None:
        for kind, payload in frames:
            if kind == wire.JOBS:
                self._run_batch(payload)  # type: ignore[arg-type]
            elif kind == wire.FREE:
                if self.region is not None:
                    self.region.parent_read(payload)  # type: ignore[arg-type]
            elif kind == wire.PROCESS:
                self._load(payload)  # type: ignore[arg-type]
            elif kind == wire.STOP:
                self._finish()
            else:
                raise wire.WireError(f"unexpected frame kind {kind} from the parent")

    def _run_batch(self, batch: wire.JobBatch) -> None:
        seqs = batch.seqs
        self.in_hand += len(seqs)
        for index, process in batch.processes.items():
            self.process_of[seqs[index]] = process
        for index, crashes in batch.crashes.items():
            self.crashes_of[seqs[index]] = crashes
        submit, emit = self.runner.submit, self._emit
        for seq, job in zip(batch.seqs, batch.jobs, strict=True):
            submit(job, partial(emit, seq))

    def _load(self, process: wire.Process) -> None:
        """Import a ``process=`` function and tell the parent whether that worked."""
        function: processing.Function | ProcessError
        try:
            function = processing.load(process.spec, self.hello.sys_path)
        except ProcessError as exc:
            function = exc
        self.functions[process.id] = (process.spec.function, function)
        error = str(function) if isinstance(function, ProcessError) else None
        wire.append_frame(self.out, wire.LOADED, wire.Loaded(process.id, error))
        self._schedule_flush()

    def _emit(self, seq: int, result: Result) -> None:
        """Queue a job's Result for this turn's batch."""
        if self.crashes_of:
            result.attempts += self.crashes_of.pop(seq, 0)
        if self.process_of:
            process = self.process_of.pop(seq, 0)
            if process:
                result = self._process(process, result)
        region = self.region
        if region is not None:
            body = result.body
            # Received into the ring already? (Any other body this job received there
            # is released.) A small body was not: two checks, no call.
            position = self.ring_bodies.claim(body) if self.placed else None  # type: ignore[union-attr]
            if position is None and body is not None and len(body) >= region.threshold:
                position = region.put(body)
            if position is not None:
                assert body is not None
                region.sent.append(position)
                result.body = None
                self.bodies.append((len(self.results), position, len(body)))
        self.headers.append(self.pairs.numbers(result.headers))
        result.headers = ()
        self.in_hand -= 1
        if not self.results:
            self.first_at = self.loop.time()
        self.seqs.append(seq)
        self.results.append(result)
        self._schedule_flush()

    def _process(self, process: int, result: Result) -> Result:
        spec, function = self.functions.get(process, ("?", None))
        if function is None or isinstance(function, ProcessError):
            return processing.failed(result, str(function or "unknown process function"))
        return processing.run(function, spec, result)

    def _schedule_flush(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._turn_ended)

    def _turn_ended(self) -> None:
        """Send this turn's Results, or hold a small batch back briefly.

        Each RESULTS frame wakes the parent, which then pays for the frame, the job
        batch it sends back and, on a shared CPU, the switch of processes -- tens of µs,
        whatever the frame holds. Responses of a multiplexed connection (HTTP/2) come in
        one or two per loop turn, so a turn's batch was often 1-3 Results and the
        parent spent 15-20 µs per Result instead of 4 (10 h2 streams over TLS: 11,900
        requests/s, 15,600 with the hold). So while fewer Results wait than
        :attr:`batch_target` and other jobs are still in hand, the batch waits up to
        :data:`_HOLD` seconds for more; the last job in hand is answered at once, and
        no Result waits for a slow one longer than that.
        """
        self.flush_scheduled = False
        held = len(self.results)
        if held and self.in_hand and held < self.batch_target:
            due = self.first_at + _HOLD
            if self.loop.time() < due:
                if self.hold_handle is None:
                    self.hold_handle = self.loop.call_at(due, self._flush)
                if self.out:
                    self._write()
                return
        self._flush()

    def _beat(self) -> None:
        """Tell the parent this loop still turns (a stuck one stops beating and is replaced)."""
        wire.append_frame(self.out, wire.HEARTBEAT, None)
        self._flush()
        assert self.hello.heartbeat is not None
        self.beat_handle = self.loop.call_later(self.hello.heartbeat, self._beat)

    def _flush(self) -> None:
        if self.hold_handle is not None:
            self.hold_handle.cancel()
            self.hold_handle = None
        if self.results:
            pairs_from, pairs = self.pairs.take()
            batch = (self.seqs, self.results, self.bodies, self.headers, pairs_from, pairs)
            self.seqs, self.results, self.bodies, self.headers = [], [], [], []
            wire.append_frame(self.out, wire.RESULTS, batch)
        self._write()

    def _write(self) -> None:
        link = self.link
        if self.out and link is not None and link.transport is not None:
            # Hand the buffer over rather than copy it.
            out, self.out = self.out, bytearray()
            link.transport.write(out)

    def parent_gone(self) -> None:
        self._finish()

    def _finish(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(None)


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    module = type(loop).__module__
    if module.startswith("aioduct.uring"):
        return "uring"
    return "uvloop" if module.startswith("uvloop") else "asyncio"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    fd, parent, loop_kind = int(args[0]), int(args[1]), args[2]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    _tune_malloc()
    sock = socket.socket(fileno=fd)
    hello, early = _read_hello(sock)
    try:
        if hello.cpu is not None:
            os.sched_setaffinity(0, {hello.cpu})
        loop = _new_loop(loop_kind)
        worker = _Worker(hello, loop_kind, loop)
    except Exception as exc:
        _fatal(sock, f"worker {hello.worker} cannot start: {type(exc).__name__}: {exc}")
        sys.exit(2)
    try:
        loop.run_until_complete(worker.serve(sock, early))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
