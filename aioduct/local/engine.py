"""LocalEngine: one pinned worker process per core, fed Jobs over a msgspec wire.

The parent side. It starts the workers (:mod:`aioduct.local.worker`), shards Jobs to
them by origin through the :class:`~aioduct.local.dispatch.Dispatcher`, streams their
Results back to whoever asked (a ``map()``, an ``amap()``, a single ``request()``), and
replaces a worker that dies, sending it again the jobs the dead one held.

Everything here runs on one asyncio loop in the parent: the caller's loop for
``async with``/``amap()``/``arequest()``, or a private loop driven from the calling
thread for ``with``/``map()``/``request()`` (so Ctrl-C lands in the caller's thread and
unwinds through ``with``, which stops the workers in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, Final

import msgspec

from ..config import ClientConfig
from ..errors import AioductError, ClientClosed, EngineUnavailable
from ..jobs import Job, Result
from ..retries import RetryConfig
from ..runner import BulkEngine, JobsLike, RunnerSettings, _retry, bulk_config, map_batches
from . import wire
from .dispatch import DEFAULT_MAX_CRASHES, Dispatcher, EngineStats, Sink

__all__ = ["LocalEngine"]

log = logging.getLogger("aioduct")

#: Longest wait for every worker to say READY.
_START_TIMEOUT: Final = 60.0
#: Longest wait for workers to exit after STOP before they are killed.
_STOP_GRACE: Final = 3.0
#: Jobs queued in a worker per unit of its concurrency (keeps it busy between frames).
_WINDOW_FACTOR: Final = 2
LOOPS: Final = ("uring", "asyncio")
#: Where the ``aioduct`` package lives: workers import it from there, whatever their cwd.
_PACKAGE_ROOT: Final = str(Path(__file__).resolve().parents[2])


def usable_cpus() -> list[int]:
    """The CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def uring_problem() -> str | None:
    """Why the local engine cannot use io_uring here, or ``None`` when it can."""
    from .. import uring

    return uring.unavailable_reason()


class _Slot:
    """One worker position: its current process and link, and frames waiting to go out."""

    __slots__ = (
        "cpu",
        "index",
        "last_seen",
        "link",
        "out",
        "proc",
        "ready",
        "runtime",
        "started",
    )

    def __init__(self, index: int, cpu: int | None) -> None:
        self.index = index
        self.cpu = cpu
        self.proc: subprocess.Popen[bytes] | None = None
        self.link: _ParentLink | None = None
        self.out = bytearray()
        self.ready: asyncio.Future[None] | None = None
        self.runtime = ""
        self.started = 0.0
        self.last_seen = 0.0


class _ParentLink(asyncio.Protocol):
    def __init__(self, engine: LocalEngine, slot: _Slot) -> None:
        self.engine = engine
        self.slot = slot
        self.reader = wire.FrameReader()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except wire.WireError as exc:
            log.error("aioduct: worker %d sent garbage (%s); replacing it", self.slot.index, exc)
            if self.transport is not None:
                self.transport.abort()
            return
        self.engine._on_frames(self, frames)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.engine._on_lost(self)


class LocalEngine(BulkEngine):
    """Bulk HTTP on every core: one pinned worker process per CPU, each on io_uring.

    ::

        with aioduct.LocalEngine(workers=4, timeout=10) as engine:
            for result in engine.map(urls):           # completion order
                print(result.worker, result.status, result.url)

    Options: ``workers`` (default: the CPUs this process may use), ``config`` or any
    :class:`~aioduct.ClientConfig` option as a keyword, ``concurrency`` (requests in
    flight *per worker*), ``per_host_concurrency`` and ``per_host_rate`` (requests/s
    per origin; jobs are sharded by origin, so these hold engine-wide), ``retry`` (a
    :class:`~aioduct.RetryConfig` or a number of retries), ``keep_body`` (``False``
    drops bodies from Results), ``stall_timeout`` (a worker whose event loop sends
    nothing, not even its heartbeat, for this long is killed and replaced, its jobs resent;
    ``None`` disables it), ``pin`` (pin each worker to one CPU), ``sharding``
    (``"origin"``, default: a host's jobs all run on one worker, where its connections
    and per-host limits live; ``"balanced"``: each job to the least busy worker, for a
    few hosts and many cores, without per-host limits), and ``loop``:
    ``"uring"`` (default; raises :class:`~aioduct.EngineUnavailable` saying why where
    io_uring is unusable) or ``"asyncio"`` (uvloop) for machines without io_uring.
    """

    name = "local"

    def __init__(
        self,
        *,
        workers: int | None = None,
        config: ClientConfig | None = None,
        concurrency: int = 64,
        per_host_concurrency: int | None = None,
        per_host_rate: float | None = None,
        retry: RetryConfig | int | None = None,
        keep_body: bool = True,
        pin: bool = True,
        loop: str = "uring",
        max_crashes: int = DEFAULT_MAX_CRASHES,
        sharding: str = "origin",
        stall_timeout: float | None = 30.0,
        **options: Any,
    ) -> None:
        config = bulk_config(config, options, concurrency)
        self.config = config
        self.settings = RunnerSettings(
            concurrency=concurrency,
            per_host_concurrency=per_host_concurrency,
            per_host_rate=per_host_rate,
            retry=_retry(retry),
            keep_body=keep_body,
        )
        if stall_timeout is not None and not stall_timeout > 0:
            raise ValueError(f"stall_timeout must be > 0 seconds or None, not {stall_timeout!r}")
        self.stall_timeout = stall_timeout
        if loop not in LOOPS:
            raise ValueError(f"loop must be one of {', '.join(LOOPS)}, not {loop!r}")
        if loop == "uring":
            problem = uring_problem()
            if problem is not None:
                raise EngineUnavailable(
                    f"the local engine runs its workers on io_uring, which is unusable "
                    f"here: {problem} Use engine='send' (or 'auto'), or "
                    f"LocalEngine(loop='asyncio') to run the workers on asyncio."
                )
        cpus = usable_cpus()
        if workers is None:
            workers = len(cpus)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive number of processes, not {workers!r}")
        self.workers = workers
        self.loop_kind = loop
        self._slots = [_Slot(i, cpus[i % len(cpus)] if pin else None) for i in range(workers)]
        if sharding == "balanced" and (per_host_concurrency or per_host_rate):
            raise ValueError(
                "per-host limits need sharding='origin': with 'balanced' one host's jobs "
                "are spread over workers that do not share their per-host state"
            )
        self._dispatcher = Dispatcher(
            workers, concurrency * _WINDOW_FACTOR, max_crashes=max_crashes, sharding=sharding
        )
        # Encoded once, here: an option msgpack cannot carry fails in the caller's frame.
        self._config_bytes = msgspec.msgpack.encode(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room: list[asyncio.Future[None]] = []
        self._respawning: set[asyncio.Task[None]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._broken: AioductError | None = None
        self._state = "new"  # -> "running" -> "closed"

    # -- public state ----------------------------------------------------------------------------

    @property
    def stats(self) -> EngineStats:
        return self._dispatcher.stats

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids, by worker index."""
        return [slot.proc.pid for slot in self._slots if slot.proc is not None]

    @property
    def runtimes(self) -> list[str]:
        """The event loop each worker runs (``"uring"``, or ``"uvloop"``/``"asyncio"``)."""
        return [slot.runtime for slot in self._slots]

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers and wait until each is ready (``async with`` calls this)."""
        if self._state == "running":
            return
        if self._state == "closed":
            raise ClientClosed("the local engine is closed")
        self._loop = asyncio.get_running_loop()
        self._state = "running"
        try:
            for slot in self._slots:
                await self._spawn(slot)
            ready = [slot.ready for slot in self._slots if slot.ready is not None]
            async with asyncio.timeout(_START_TIMEOUT):
                await asyncio.gather(*ready)
            if self.stall_timeout is not None:
                self._watchdog = self._loop.create_task(self._watch(self.stall_timeout))
        except BaseException:
            await self.aclose()
            raise

    async def _spawn(self, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p
            )
            fd = child_end.fileno()
            slot.proc = subprocess.Popen(  # noqa: ASYNC220 (fork+exec: returns at once)
                [
                    sys.executable,
                    "-m",
                    "aioduct.local.worker",
                    str(fd),
                    str(os.getpid()),
                    self.loop_kind,
                ],
                pass_fds=(fd,),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            child_end.close()
        slot.started = time.monotonic()
        slot.ready = loop.create_future()
        parent_end.setblocking(False)
        _, link = await loop.create_connection(lambda: _ParentLink(self, slot), sock=parent_end)
        slot.link = link
        hello = bytearray()
        wire.append_frame(hello, wire.HELLO, 0, self._hello(slot))
        assert link.transport is not None
        link.transport.write(bytes(hello))
        self._flush(slot)

    def _hello(self, slot: _Slot) -> wire.Hello:
        return wire.Hello(
            worker=slot.index,
            cpu=slot.cpu,
            config=msgspec.msgpack.decode(self._config_bytes, type=ClientConfig),
            settings=self.settings,
            heartbeat=_heartbeat(self.stall_timeout),
        )

    async def aclose(self) -> None:
        """Stop the workers (jobs still in flight are abandoned) and wait for them to exit."""
        if self._state == "closed":
            return
        self._state = "closed"
        if self._watchdog is not None:
            self._watchdog.cancel()
        for slot in self._slots:
            link = slot.link
            if link is not None and link.transport is not None:
                stop = bytearray()
                wire.append_frame(stop, wire.STOP, 0, None)
                link.transport.write(bytes(stop))
                link.transport.close()
        deadline = time.monotonic() + _STOP_GRACE
        for slot in self._slots:
            proc = slot.proc
            if proc is None:
                continue
            while proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            _reap(proc)
        # Every job still gets its one Result, even now.
        closed = ClientClosed("the local engine was closed before this job finished")
        for slot in self._slots:
            for sink, result in self._dispatcher.abandon(slot.index, closed):
                sink(result)
        self._wake_room()

    def close(self) -> None:
        """Blocking :meth:`aclose` (also for an engine only ever started with ``async with``,
        whose loop may be gone: then the workers are killed and reaped here)."""
        super().close()
        if self._state != "closed":
            self._state = "closed"
            for slot in self._slots:
                if slot.proc is not None:
                    _reap(slot.proc)

    def __del__(self) -> None:
        if getattr(self, "_state", "closed") == "running":
            for slot in self._slots:
                if slot.proc is not None and slot.proc.poll() is None:
                    slot.proc.kill()

    # -- frames ----------------------------------------------------------------------------------

    def _send_job(self, slot: _Slot, job: Job, sink: Sink) -> None:
        seq = self._dispatcher.assign(slot.index, job, sink)
        self._queue(slot, wire.JOB, seq, job)

    def _queue(self, slot: _Slot, kind: int, seq: int, payload: object) -> None:
        was_empty = not slot.out
        wire.append_frame(slot.out, kind, seq, payload)
        if was_empty and self._loop is not None:
            self._loop.call_soon(self._flush, slot)

    def _flush(self, slot: _Slot) -> None:
        link = slot.link
        if slot.out and link is not None and link.transport is not None:
            out, slot.out = slot.out, bytearray()  # handed over, not copied
            link.transport.write(out)

    def _on_frames(self, link: _ParentLink, frames: list[tuple[int, int, object]]) -> None:
        slot = link.slot
        if slot.link is not link:
            return
        assert self._loop is not None
        slot.last_seen = self._loop.time()
        dispatcher = self._dispatcher
        freed = False
        for kind, seq, payload in frames:
            if kind == wire.RESULT:
                sink = dispatcher.complete(slot.index, seq, payload)  # type: ignore[arg-type]
                if sink is not None:
                    sink(payload)  # type: ignore[arg-type]
                    freed = True
            elif kind == wire.READY:
                slot.runtime = payload.runtime  # type: ignore[attr-defined]
                if slot.ready is not None and not slot.ready.done():
                    slot.ready.set_result(None)
            elif kind == wire.FATAL:
                self._fail_start(slot, EngineUnavailable(str(payload)))
        if freed:
            self._wake_room()

    async def _watch(self, stall_timeout: float) -> None:
        """Replace a worker whose loop stopped turning (no frame, not even a heartbeat).

        Only time while this loop runs counts: a blocking ``map()`` runs the loop only
        while the caller waits in it, so a gap between ticks means the caller was busy,
        not that the workers were silent, and restarts every worker's clock.
        """
        loop = asyncio.get_running_loop()
        interval = _heartbeat(stall_timeout)
        assert interval is not None
        last_tick = loop.time()
        for slot in self._slots:
            slot.last_seen = last_tick
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            if now - last_tick > 2 * interval:
                for slot in self._slots:
                    slot.last_seen = now
            last_tick = now
            for slot in self._slots:
                proc = slot.proc
                if slot.link is None or proc is None or now - slot.last_seen <= stall_timeout:
                    continue
                log.warning(
                    "aioduct: local engine worker %d (pid %d) sent nothing for %.1f s; "
                    "presuming it wedged and replacing it",
                    slot.index,
                    proc.pid,
                    now - slot.last_seen,
                )
                slot.last_seen = now
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()  # its socket closes: _on_lost resends its jobs elsewhere

    def _wake_room(self) -> None:
        waiters, self._room = self._room, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _on_lost(self, link: _ParentLink) -> None:
        slot = link.slot
        if slot.link is not link:
            return
        slot.link = None
        slot.out.clear()  # every job in it is still in the in-flight table: resent below
        proc = slot.proc
        code = _reap(proc) if proc is not None else None
        if self._state != "running":
            return
        ready = slot.ready
        if ready is None or not ready.done() or ready.exception() is not None:
            self._fail_start(
                slot,
                EngineUnavailable(
                    f"worker {slot.index} exited during start-up (exit status {code}); "
                    "its error output above says why"
                ),
            )
            return
        log.warning(
            "aioduct: local engine worker %d (pid %s) died (exit status %s); replacing it",
            slot.index,
            proc.pid if proc is not None else "?",
            code,
        )
        resend, failed = self._dispatcher.orphaned(slot.index)
        for sink, result in failed:
            sink(result)
        for seq, job in resend:
            wire.append_frame(slot.out, wire.JOB, seq, job)
        assert self._loop is not None
        self._respawning.add(task := self._loop.create_task(self._respawn(slot)))
        task.add_done_callback(self._respawning.discard)
        if failed:
            self._wake_room()

    async def _respawn(self, slot: _Slot) -> None:
        # The resent jobs wait in slot.out; _spawn sends them right after the HELLO.
        try:
            await self._spawn(slot)
        except Exception as exc:
            self._fail_start(
                slot, EngineUnavailable(f"could not replace worker {slot.index}: {exc}")
            )

    def _fail_start(self, slot: _Slot, error: AioductError) -> None:
        """A worker could not start: fail what it holds and refuse further work."""
        if slot.ready is not None and not slot.ready.done():
            slot.ready.set_exception(error)
        if self._broken is None:
            self._broken = error
        for sink, result in self._dispatcher.abandon(slot.index, error):
            sink(result)
        self._wake_room()

    # -- mapping ---------------------------------------------------------------------------------

    async def _ensure_started(self) -> None:
        if self._state != "running":
            await self.start()
        if self._broken is not None:
            raise self._broken
        if self._loop is not asyncio.get_running_loop():
            raise RuntimeError(
                "this local engine runs on the event loop it was started on; use "
                "'with engine:' + map() from synchronous code, 'async with' + amap() in a loop"
            )

    async def _batches(self, jobs: JobsLike) -> AsyncGenerator[list[Result], None]:
        await self._ensure_started()
        batches = map_batches(jobs, self._dispatcher.window * self.workers, self)
        try:
            async for batch in batches:
                yield batch
        finally:
            await batches.aclose()

    def submit(self, job: Job, sink: Sink) -> bool:
        """Send ``job`` to the worker for its origin, unless that worker's window is full."""
        slot = self._slots[self._dispatcher.shard(job)]
        if not self._dispatcher.has_room(slot.index):
            return False
        self._send_job(slot, job, sink)
        return True

    def wait_for_room(self, waiter: asyncio.Future[None]) -> None:
        if self._state != "running":
            raise self._broken or ClientClosed("the local engine was closed mid-map")
        self._room.append(waiter)

    async def arequest_job(self, job: Job) -> Result:
        """Run one Job on the worker for its origin and return its Result."""
        await self._ensure_started()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()

        def sink(result: Result) -> None:
            if not future.done():
                future.set_result(result)

        slot = self._slots[self._dispatcher.shard(job)]
        while not self._dispatcher.has_room(slot.index):
            waiter = loop.create_future()
            self._room.append(waiter)
            await waiter
            if self._state != "running":
                raise self._broken or ClientClosed("the local engine is closed")
        self._send_job(slot, job, sink)
        return await future

    def __repr__(self) -> str:
        return f"<aioduct.LocalEngine workers={self.workers} loop={self.loop_kind} {self._state}>"


def _heartbeat(stall_timeout: float | None) -> float | None:
    """How often workers beat for a given stall timeout (several beats per timeout)."""
    return None if stall_timeout is None else min(1.0, stall_timeout / 4)


def _reap(proc: subprocess.Popen[bytes]) -> int | None:
    """Kill ``proc`` if it still runs and collect its exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    return proc.returncode
