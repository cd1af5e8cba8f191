"""LocalEngine: one pinned worker process per core, fed Jobs over a msgspec wire.

The parent side. It starts the workers (:mod:`aioduct.local.worker`), shards Jobs to
them by origin through the :class:`~aioduct.local.dispatch.Dispatcher`, streams their
Results back to whoever asked (a ``map()``, an ``amap()``, a single ``request()``), and
replaces a worker that dies, sending it again the jobs the dead one held.

The parent is the one process every worker shares, so what it does per result decides
how many workers it can keep busy. It therefore does little, and the same little whoever
drives it: the engine itself is synchronous code that takes bytes from a worker
(:meth:`LocalEngine._received`) and leaves frames to send in the worker's slot; a
*driver* moves those bytes. Two drivers exist:

* :class:`_Selector` for the blocking ``with``/``map()``/``request()``: a ``selectors``
  loop over the workers' sockets, run by the calling thread while it waits in
  ``map()``. No event loop, task or future per batch of Results: ~3 system calls
  (``send``, ``epoll_wait``, ``recv``) per batch, and Ctrl-C lands in the caller's frame.
* :class:`_Transports` for ``async with``/``amap()``/``arequest()`` (and
  ``Client(engine="local")``): one asyncio transport per worker on the caller's loop.

An engine is driven by the one it was started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import selectors
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any, Final

import msgspec

from .. import processing
from ..config import ClientConfig
from ..errors import AioductError, ClientClosed, EngineUnavailable, ProcessError
from ..jobs import Job, Result
from ..retries import RetryConfig
from ..runner import (
    BulkEngine,
    JobsLike,
    RunnerSettings,
    SubmitMany,
    Window,
    bulk_config,
    map_batches,
    with_runner_policies,
)
from . import shm, wire
from .dispatch import DEFAULT_MAX_CRASHES, Dispatcher, EngineStats, Outbox, Sink
from .pairs import PairReader

__all__ = ["LocalEngine"]

log = logging.getLogger("aioduct")

#: Longest wait for every worker to say READY.
_START_TIMEOUT: Final = 60.0
#: Longest wait for workers to import a ``process=`` function.
_LOAD_TIMEOUT: Final = 60.0
#: Longest wait for workers to exit after STOP before they are killed.
_STOP_GRACE: Final = 3.0
#: Jobs a worker may hold, per unit of its concurrency: the ones it runs, the ones
#: queued to start next, and as many again for its Results on their way to the caller
#: (which count against the window until taken). At 2, a worker's queue ran dry about
#: every other job under load, and each lull stopped a lane that the next job batch had
#: to start again (a task each: 0.48 per job, measured).
_WINDOW_FACTOR: Final = 4
#: Bytes the blocking driver reads per ``recv``.
_READ_SIZE: Final = 1 << 18
LOOPS: Final = ("uring", "asyncio")
#: Where the ``aioduct`` package lives: workers import it from there, whatever their cwd.
_PACKAGE_ROOT: Final = str(Path(__file__).resolve().parents[2])
#: Environment variable: a command line every worker is started under (split like a
#: shell would), for profilers -- ``valgrind --tool=callgrind``, ``perf record --``.
WORKER_PREFIX: Final = "AIODUCT_WORKER_PREFIX"


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
    """One worker position: its current process, socket and ring, and what waits to go out."""

    __slots__ = (
        "cpu",
        "dirty",
        "freed",
        "index",
        "last_seen",
        "link",
        "loading",
        "out",
        "outbox",
        "pairs",
        "proc",
        "reader",
        "ready",
        "region",
        "runtime",
        "sock",
    )

    def __init__(self, index: int, cpu: int | None, outbox: Outbox) -> None:
        self.index = index
        self.cpu = cpu
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.link: _Link | None = None
        self.reader = wire.FrameReader()
        self.pairs = PairReader()
        self.region: shm.ParentRegion | None = None
        self.freed = 0
        """The count of bodies read the last FREE frame reported."""
        self.out = bytearray()
        self.outbox = outbox
        """Its jobs assigned since the last send (the dispatcher's)."""
        self.dirty = False
        """A send is due (the driver was told)."""
        self.ready = False
        self.loading: set[int] = set()
        """Process ids sent to this worker and not yet confirmed."""
        self.runtime = ""
        self.last_seen = 0.0

    def pack(self) -> bytearray:
        """:attr:`out` with every frame due appended (a FREE, then the job batch)."""
        self.dirty = False
        out = self.out
        region = self.region
        if region is not None and region.taken > self.freed:
            self.freed = region.taken
            wire.append_frame(out, wire.FREE, self.freed)
        batch = self.outbox.take()
        if batch is not None:
            wire.append_frame(out, wire.JOBS, batch)
        return out


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
    and per-host limits live -- with cookies on, a site's: every host under one
    registrable domain, so its cookies are one jar's; ``"balanced"``: each job to the
    least busy worker, for a few hosts and many cores, without per-host limits; each
    worker's jar then sees only its share of a site's responses), ``shm_size`` (bytes of shared
    memory per worker for bodies of at least ``shm_threshold`` bytes; 0: every body
    travels through the worker's socket), and ``loop``: ``"uring"`` (default; raises
    :class:`~aioduct.EngineUnavailable` saying why where io_uring is unusable) or
    ``"asyncio"`` (uvloop) for machines without io_uring.
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
        shm_size: int = shm.DEFAULT_SIZE,
        shm_threshold: int = shm.DEFAULT_THRESHOLD,
        **options: Any,
    ) -> None:
        config = with_runner_policies(
            bulk_config(config, options, concurrency), retry=retry, per_host_rate=per_host_rate
        )
        if config.middleware:  # imported in every worker: fail here, in the caller, first
            from ..middleware import resolve_middleware

            resolve_middleware(config.middleware)
        self.config = config
        self.settings = RunnerSettings(
            concurrency=concurrency, per_host_concurrency=per_host_concurrency, keep_body=keep_body
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
        if isinstance(shm_size, bool) or not isinstance(shm_size, int) or shm_size < 0:
            raise ValueError(f"shm_size must be a number of bytes >= 0, not {shm_size!r}")
        if isinstance(shm_threshold, bool) or not isinstance(shm_threshold, int):
            raise ValueError(f"shm_threshold must be a number of bytes, not {shm_threshold!r}")
        self.shm_size = shm_size if keep_body and shm.supported() else 0
        self.shm_threshold = max(1, shm_threshold)
        cpus = usable_cpus()
        if workers is None:
            workers = len(cpus)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive number of processes, not {workers!r}")
        self.workers = workers
        self.loop_kind = loop
        per_host_limit = config.rate_limit is not None and config.rate_limit.per_host
        if sharding == "balanced" and (per_host_concurrency or per_host_limit):
            raise ValueError(
                "per-host limits need sharding='origin': with 'balanced' one host's jobs "
                "are spread over workers that do not share their per-host state"
            )
        self._dispatcher = Dispatcher(
            workers,
            concurrency * _WINDOW_FACTOR,
            max_crashes=max_crashes,
            sharding=sharding,
            by_site=config.cookies,
        )
        self._slots = [
            _Slot(i, cpus[i % len(cpus)] if pin else None, self._dispatcher.outboxes[i])
            for i in range(workers)
        ]
        # Encoded once, here: an option msgpack cannot carry fails in the caller's frame.
        self._config_bytes = msgspec.msgpack.encode(config)
        self._driver: _Selector | _Transports | None = None
        self._broken: AioductError | None = None
        self._state = "new"  # -> "running" -> "closed"
        #: ``process=`` functions (by :attr:`~aioduct.processing.Spec.key`) and their ids,
        #: and why one could not be imported.
        self._processes: dict[bytes, tuple[int, processing.Spec]] = {}
        self._process_errors: dict[int, str] = {}

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

    def start_blocking(self) -> None:
        """Start the workers, driven from this thread (``with``, ``map()`` and
        ``request()`` call this)."""
        if self._state == "running":
            self._selector()
            return
        self._begin(_Selector(self))
        try:
            self._selector().wait_until(self._all_ready, _START_TIMEOUT, "start")
        except BaseException:
            self.close()
            raise

    async def start(self) -> None:
        """Start the workers on the running loop (``async with`` calls this)."""
        if self._state == "running":
            self._transports()
            return
        self._begin(_Transports(self, asyncio.get_running_loop()))
        try:
            await self._transports().wait_until(self._all_ready, _START_TIMEOUT, "start")
        except BaseException:
            await self.aclose()
            raise

    def _begin(self, driver: _Selector | _Transports) -> None:
        if self._state == "closed":
            raise ClientClosed("the local engine is closed")
        self._driver = driver
        self._state = "running"
        for slot in self._slots:
            self._spawn(slot)

    def _all_ready(self) -> bool:
        if self._broken is not None:
            raise self._broken
        return all(slot.ready for slot in self._slots)

    def _selector(self) -> _Selector:
        driver = self._driver
        if not isinstance(driver, _Selector):
            raise RuntimeError(
                "this local engine was started in an event loop: use amap()/arequest() "
                "there ('async with engine:'), or 'with engine:' + map() from synchronous code"
            )
        if self._broken is not None:
            raise self._broken
        return driver

    def _transports(self) -> _Transports:
        driver = self._driver
        if not isinstance(driver, _Transports) or driver.loop is not asyncio.get_running_loop():
            raise RuntimeError(
                "this local engine runs on the event loop it was started on; use "
                "'with engine:' + map() from synchronous code, 'async with' + amap() in a loop"
            )
        if self._broken is not None:
            raise self._broken
        return driver

    def _spawn(self, slot: _Slot) -> None:
        """Start ``slot``'s worker; its HELLO and anything queued go out once connected."""
        assert self._driver is not None
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        region = None
        try:
            if self.shm_size:
                region = shm.ParentRegion(self.shm_size, f"aioduct-worker-{slot.index}")
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p
            )
            fd = child_end.fileno()
            slot.proc = subprocess.Popen(
                [
                    *shlex.split(env.get(WORKER_PREFIX, "")),
                    sys.executable,
                    "-m",
                    "aioduct.local.worker",
                    str(fd),
                    str(os.getpid()),
                    self.loop_kind,
                ],
                pass_fds=(fd,) if region is None else (fd, region.fd),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except BaseException:
            parent_end.close()
            if region is not None:
                region.close()
            raise
        finally:
            child_end.close()
        hello = wire.Hello(
            worker=slot.index,
            cpu=slot.cpu,
            config=msgspec.msgpack.decode(self._config_bytes, type=ClientConfig),
            settings=self.settings,
            heartbeat=_heartbeat(self.stall_timeout),
            bodies=None
            if region is None
            else wire.SharedBodies(fd=region.fd, size=region.size, threshold=self.shm_threshold),
            sys_path=[p for p in sys.path if p],
        )
        if region is not None:
            region.close_fd()
        parent_end.setblocking(False)
        slot.sock = parent_end
        slot.region = region
        slot.freed = 0
        slot.reader = wire.FrameReader()
        slot.pairs = PairReader()
        slot.ready = False
        slot.last_seen = time.monotonic()
        # HELLO first, then every process function (the jobs queued already come after).
        head = bytearray()
        wire.append_frame(head, wire.HELLO, hello)
        for process, spec in self._processes.values():
            wire.append_frame(head, wire.PROCESS, wire.Process(process, spec))
            slot.loading.add(process)
        slot.out[:0] = head
        self._driver.attach(slot)
        self._due(slot)

    def close(self) -> None:
        """Stop the workers (jobs in flight are answered with ``ClientClosed``) and wait
        for them to exit; also for an engine started with ``async with`` whose loop is
        gone (then the workers are killed and reaped here)."""
        if self._state == "closed":
            return
        if self._state == "running" and isinstance(self._driver, _Selector):
            deadline = self._stop_workers()
            while self._exiting(deadline):
                time.sleep(0.01)
        self._finish()

    async def aclose(self) -> None:
        """Stop the workers (jobs still in flight are answered with ``ClientClosed``) and
        wait for them to exit."""
        if self._state == "closed":
            return
        if self._state == "running":
            deadline = self._stop_workers()
            while self._exiting(deadline):  # noqa: ASYNC110 (child exits have no event here)
                await asyncio.sleep(0.01)
        self._finish()

    def _exiting(self, deadline: float) -> bool:
        """Some worker still runs, and its grace period is not over."""
        running = any(slot.proc is not None and slot.proc.poll() is None for slot in self._slots)
        return running and time.monotonic() < deadline

    def _stop_workers(self) -> float:
        """STOP every worker and close its socket: each finishes and exits on its own
        (returns when they must have: after that, they are killed)."""
        self._state = "stopping"
        driver = self._driver
        for slot in self._slots:
            if slot.sock is None:
                continue
            wire.append_frame(slot.out, wire.STOP, None)
            if driver is not None:
                driver.close_link(slot)
        return time.monotonic() + _STOP_GRACE

    def _finish(self) -> None:
        self._state = "closed"
        if self._driver is not None:
            self._driver.close()
        for slot in self._slots:
            if slot.proc is not None:
                _reap(slot.proc)
            if slot.sock is not None:
                slot.sock.close()
                slot.sock = None
            if slot.region is not None:
                slot.region.close()
                slot.region = None
        # Every job still gets its one Result, even now.
        closed = ClientClosed("the local engine was closed before this job finished")
        for slot in self._slots:
            for sink, result in self._dispatcher.abandon(slot.index, closed):
                sink(result)

    def __enter__(self) -> LocalEngine:
        self.start_blocking()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_state", "closed") != "closed":
            for slot in self._slots:
                if slot.proc is not None and slot.proc.poll() is None:
                    slot.proc.kill()

    # -- what the drivers call -------------------------------------------------------------------

    def _due(self, slot: _Slot) -> None:
        """Frames wait in ``slot``: have the driver send them."""
        if not slot.dirty and self._driver is not None:
            slot.dirty = True
            self._driver.due(slot)

    def _received(self, slot: _Slot, data: bytes | memoryview) -> None:
        """Bytes from ``slot``'s worker: handle every whole frame in them."""
        slot.last_seen = time.monotonic()
        try:
            frames = slot.reader.feed(data)
            for kind, payload in frames:
                if kind == wire.RESULTS:
                    self._results(slot, payload)  # type: ignore[arg-type]
                elif kind == wire.HEARTBEAT:
                    pass
                elif kind == wire.READY:
                    slot.ready = True
                    slot.runtime = payload.runtime  # type: ignore[attr-defined]
                elif kind == wire.LOADED:
                    self._loaded(slot, payload)  # type: ignore[arg-type]
                elif kind == wire.FATAL:
                    self._fail_start(slot, EngineUnavailable(str(payload)))
                else:
                    raise wire.WireError(f"unexpected frame kind {kind} from a worker")
        except wire.WireError as exc:
            log.error("aioduct: worker %d sent garbage (%s); replacing it", slot.index, exc)
            if slot.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.kill()  # its socket closes: the driver reports it lost
        if self._driver is not None:
            self._driver.changed()

    def _results(self, slot: _Slot, batch: wire.ResultBatch) -> None:
        results = batch.results
        pairs = slot.pairs
        try:
            if batch.pairs or batch.pairs_from != len(pairs.pairs):
                pairs.add(batch.pairs_from, batch.pairs)
            get = pairs.pairs.__getitem__
            for result, numbers in zip(results, batch.headers, strict=True):
                result.headers = tuple(map(get, numbers))
        except (ValueError, IndexError) as exc:
            raise wire.WireError(f"bad header numbers: {exc}") from None
        if batch.bodies:
            region = slot.region
            if region is None:
                raise wire.WireError("a body in shared memory, but this worker has none")
            try:
                for index, position, length in batch.bodies:
                    results[index].body = region.take(position, length)
            except (ValueError, IndexError) as exc:
                raise wire.WireError(str(exc)) from None
            self._dispatcher._stats.shared_bodies += len(batch.bodies)
            self._due(slot)  # the FREE frame
        self._dispatcher.complete(slot.index, batch.seqs, results)

    def _loaded(self, slot: _Slot, loaded: wire.Loaded) -> None:
        slot.loading.discard(loaded.id)
        if loaded.error is not None:
            self._process_errors.setdefault(loaded.id, loaded.error)

    def _lost(self, slot: _Slot) -> None:
        """``slot``'s worker closed its socket (exited, killed, or sent garbage)."""
        if self._driver is not None:
            self._driver.detach(slot)
        if slot.sock is not None:
            slot.sock.close()
            slot.sock = None
        if slot.region is not None:
            slot.region.close()  # a replacement gets a fresh ring
            slot.region = None
        slot.out.clear()  # every job in it is still in the in-flight table: resent below
        slot.dirty = False
        slot.loading.clear()
        if self._state != "running":
            return  # closing: close() gives the workers their grace period, then reaps
        proc = slot.proc
        code = _reap(proc) if proc is not None else None
        if not slot.ready:
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
        for sink, result in self._dispatcher.orphaned(slot.index):
            sink(result)
        try:  # the jobs to send again wait in its outbox
            self._spawn(slot)
        except Exception as exc:
            self._fail_start(
                slot, EngineUnavailable(f"could not replace worker {slot.index}: {exc}")
            )

    def _fail_start(self, slot: _Slot, error: AioductError) -> None:
        """A worker could not start: fail what it holds and refuse further work."""
        if self._broken is None:
            self._broken = error
        for sink, result in self._dispatcher.abandon(slot.index, error):
            sink(result)

    def _stalled(self, now: float, stall_timeout: float) -> None:
        """Kill every worker silent for ``stall_timeout`` (its jobs go to a replacement).

        Only ready workers: starting up (imports, a ring) has its own, longer limit.
        """
        for slot in self._slots:
            proc = slot.proc
            if not slot.ready or proc is None or now - slot.last_seen <= stall_timeout:
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
                proc.kill()  # its socket closes: _lost resends its jobs elsewhere

    def _resume_clocks(self, now: float) -> None:
        """The caller was away (the driver did not run): no worker was silent meanwhile."""
        for slot in self._slots:
            slot.last_seen = now

    # -- jobs ------------------------------------------------------------------------------------

    def submit(self, job: Job, sink: Sink) -> bool:
        """Queue ``job`` for the worker of its origin, unless that worker's window is full."""
        if not self._dispatcher.assign(job, sink):
            return False
        self.submitted()
        return True

    def submitted(self) -> None:
        """Jobs were queued: have the driver send every outbox that holds some (or raise
        why the engine cannot run them)."""
        if self._broken is not None:
            raise self._broken
        for slot in self._slots:
            if slot.outbox.seqs and not slot.dirty:
                self._due(slot)

    def _submitter(self, process: int) -> _Submitter:
        assign = self._dispatcher.assign_many
        return _Submitter(partial(assign, process=process) if process else assign, self)

    def _register(self, spec: processing.Spec) -> int:
        """The id of process function ``spec``; new ones are sent to every worker."""
        known = self._processes.get(spec.key)
        if known is not None:
            return known[0]
        process = len(self._processes) + 1
        self._processes[spec.key] = (process, spec)
        for slot in self._slots:
            if slot.sock is not None:
                wire.append_frame(slot.out, wire.PROCESS, wire.Process(process, spec))
                slot.loading.add(process)
                self._due(slot)
        return process

    def _loaded_everywhere(self, process: int) -> bool:
        error = self._process_errors.get(process)
        if error is not None:
            raise ProcessError(error)
        if self._broken is not None:
            raise self._broken
        return not any(process in slot.loading for slot in self._slots)

    # -- blocking --------------------------------------------------------------------------------

    def map(
        self,
        jobs: Iterable[Job | str],
        *,
        process: str | None = None,
        process_options: Mapping[str, Any] | None = None,
    ) -> Iterator[Result]:
        """Results of ``jobs`` as they finish, driven from this thread.

        With ``process="package.module:function"`` every worker imports the function
        first (an import error raises :class:`~aioduct.ProcessError` here, before any
        job runs) and Results carry its return value instead of headers and body (see
        :mod:`aioduct.processing`); ``process_options`` are keyword arguments for it.
        """
        if isinstance(jobs, AsyncIterable):
            raise TypeError("map() takes a plain iterable; use amap() for an async one")
        spec = processing.spec(process, process_options)
        self.start_blocking()
        selector = self._selector()
        process_id = 0
        if spec is not None:
            process_id = self._register(spec)
            selector.wait_until(
                lambda: self._loaded_everywhere(process_id), _LOAD_TIMEOUT, "import"
            )
        return chain.from_iterable(self._map(jobs, process_id, selector))

    def _map(
        self, jobs: Iterable[Job | str], process: int, selector: _Selector
    ) -> Iterator[list[Result]]:
        """The Results of ``jobs`` in batches, as they finish. :meth:`map` flattens them
        with ``chain``, in C: the parent pays for this generator per batch, not per
        Result."""
        window = Window(self._dispatcher.window * self.workers, self._submitter(process).submit)
        source = iter(jobs)
        while True:
            window.fill(source)
            if window.done:
                yield window.take()
                continue
            if window.finished:
                return
            selector.wait()

    def request(self, method: str, url: str, **job: Any) -> Result:
        """Run one request (Job fields as keywords) and return its Result, blocking."""
        job_ = Job(method=method, url=url, **job)
        self.start_blocking()
        selector = self._selector()
        got: list[Result] = []
        while not self.submit(job_, got.append):
            selector.wait()
        while not got:
            selector.wait()
        return got[0]

    # -- asyncio ---------------------------------------------------------------------------------

    async def _batches(
        self, jobs: JobsLike, spec: processing.Spec | None = None
    ) -> AsyncGenerator[list[Result], None]:
        await self.start()
        transports = self._transports()
        process_id = 0
        if spec is not None:
            process_id = self._register(spec)
            await transports.wait_until(
                lambda: self._loaded_everywhere(process_id), _LOAD_TIMEOUT, "import"
            )
        batches = map_batches(
            jobs, self._dispatcher.window * self.workers, self._submitter(process_id)
        )
        try:
            async for batch in batches:
                yield batch
        finally:
            await batches.aclose()

    def wait_for_room(self, waiter: asyncio.Future[None]) -> None:
        if self._state != "running":
            raise self._broken or ClientClosed("the local engine was closed mid-map")
        self._transports().room.append(waiter)

    async def arequest_job(self, job: Job) -> Result:
        """Run one Job on the worker for its origin and return its Result."""
        await self.start()
        transports = self._transports()
        future: asyncio.Future[Result] = transports.loop.create_future()

        def sink(result: Result) -> None:
            if not future.done():
                future.set_result(result)

        while not self.submit(job, sink):
            waiter = transports.loop.create_future()
            transports.room.append(waiter)
            await waiter
            if self._state != "running":
                raise self._broken or ClientClosed("the local engine is closed")
        return await future

    def __repr__(self) -> str:
        return f"<aioduct.LocalEngine workers={self.workers} loop={self.loop_kind} {self._state}>"


class _Submitter:
    """The engine as one map sees it (:class:`~aioduct.runner.Submitter`): jobs go
    straight to the dispatcher, with the map's process function id."""

    __slots__ = ("engine", "submit")

    def __init__(self, submit: SubmitMany, engine: LocalEngine) -> None:
        self.submit = submit
        self.engine = engine

    def submitted(self) -> None:
        self.engine.submitted()

    def wait_for_room(self, waiter: asyncio.Future[None]) -> None:
        self.engine.wait_for_room(waiter)


# -- drivers -------------------------------------------------------------------------------------


class _Selector:
    """The blocking driver: the calling thread waits on the workers' sockets itself."""

    def __init__(self, engine: LocalEngine) -> None:
        self.engine = engine
        self.selector = selectors.DefaultSelector()
        self.buffer = bytearray(_READ_SIZE)
        self.view = memoryview(self.buffer)
        self.pending: list[_Slot] = []
        self.interval = _heartbeat(engine.stall_timeout)
        self.left = time.monotonic()
        """When the caller last got control back (its time away does not count)."""

    def attach(self, slot: _Slot) -> None:
        assert slot.sock is not None
        self.selector.register(slot.sock, selectors.EVENT_READ, slot)

    def detach(self, slot: _Slot) -> None:
        if slot.sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(slot.sock)

    def due(self, slot: _Slot) -> None:
        self.pending.append(slot)

    def changed(self) -> None:
        pass

    def close_link(self, slot: _Slot) -> None:
        """Send what is queued (the STOP), then close: the worker reads both."""
        sock = slot.sock
        if sock is None:
            return
        out = slot.pack()
        with contextlib.suppress(OSError):
            sock.setblocking(True)
            sock.settimeout(1.0)
            sock.sendall(out)
        self.detach(slot)
        sock.close()
        slot.sock = None

    def close(self) -> None:
        self.selector.close()

    def wait(self, timeout: float | None = None) -> None:
        """Send what is due, then wait until a worker sends something (at most
        ``timeout`` seconds and one heartbeat interval) and handle it."""
        engine = self.engine
        if engine._broken is not None:  # a worker cannot be replaced: its jobs never will be
            raise engine._broken
        now = time.monotonic()
        interval = self.interval
        if interval is not None:
            if now - self.left > 2 * interval:
                engine._resume_clocks(now)
            timeout = interval if timeout is None else min(timeout, interval)
        self._send_due()
        try:
            events = self.selector.select(timeout)
        finally:
            self.left = time.monotonic()
        for key, mask in events:
            slot: _Slot = key.data
            if slot.sock is not key.fileobj:
                continue  # replaced by an earlier event of this round
            if mask & selectors.EVENT_WRITE:
                self._send(slot)
            if mask & selectors.EVENT_READ:
                self._read(slot)
        stall = self.engine.stall_timeout
        if stall is not None:
            self.engine._stalled(self.left, stall)

    def wait_until(self, done: Callable[[], bool], limit: float, what: str) -> None:
        deadline = time.monotonic() + limit
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise EngineUnavailable(f"the local engine's workers did not {what} in {limit} s")
            self.wait(left)

    def _send_due(self) -> None:
        pending, self.pending = self.pending, []
        for slot in pending:
            if slot.dirty and slot.sock is not None:
                self._send(slot)
        for slot in self.engine._slots:  # a map's jobs (queued without telling anyone)
            if slot.outbox.seqs and slot.sock is not None:
                self._send(slot)

    def _send(self, slot: _Slot) -> None:
        sock = slot.sock
        assert sock is not None
        out = slot.pack()
        try:
            sent = sock.send(out) if out else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            sent = len(out)  # the worker is gone: its read side reports it
        del out[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0)
        with contextlib.suppress(KeyError, ValueError):
            if self.selector.get_key(sock).events != events:
                self.selector.modify(sock, events, slot)

    def _read(self, slot: _Slot) -> None:
        sock = slot.sock
        assert sock is not None
        engine = self.engine
        while True:
            try:
                n = sock.recv_into(self.buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                n = 0
            if n == 0:
                engine._lost(slot)
                return
            engine._received(slot, self.view[:n])
            if n < _READ_SIZE or slot.sock is not sock:
                return


class _Link(asyncio.Protocol):
    """One worker's socket as an asyncio transport (the async driver)."""

    def __init__(self, engine: LocalEngine, slot: _Slot, sock: socket.socket) -> None:
        self.engine = engine
        self.slot = slot
        self.sock = sock
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.slot.sock is self.sock:
            self.engine._received(self.slot, data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.slot.sock is self.sock:
            self.engine._lost(self.slot)


class _Transports:
    """The asyncio driver: each worker's socket a transport on the caller's loop."""

    def __init__(self, engine: LocalEngine, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self.loop = loop
        self.room: list[asyncio.Future[None]] = []
        """map_batches waiters for a worker's window to open."""
        self.waiters: list[asyncio.Future[None]] = []
        """wait_until callers, woken by anything a worker sends."""
        self.tasks: set[asyncio.Task[None]] = set()
        self.watchdog: asyncio.Task[None] | None = None
        if engine.stall_timeout is not None:
            self.watchdog = loop.create_task(self._watch(engine.stall_timeout))

    def attach(self, slot: _Slot) -> None:
        assert slot.sock is not None
        task = self.loop.create_task(self._connect(slot, slot.sock))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self, slot: _Slot, sock: socket.socket) -> None:
        try:
            _, link = await self.loop.create_connection(
                lambda: _Link(self.engine, slot, sock), sock=sock
            )
        except OSError:
            if slot.sock is sock:
                self.engine._lost(slot)
            return
        if slot.sock is sock:
            slot.link = link
            self._flush(slot)

    def detach(self, slot: _Slot) -> None:
        link, slot.link = slot.link, None
        if link is not None and link.transport is not None:
            link.transport.abort()

    def due(self, slot: _Slot) -> None:
        self.loop.call_soon(self._flush, slot)

    def _flush(self, slot: _Slot) -> None:
        link = slot.link
        if link is not None and link.transport is not None and (slot.dirty or slot.out):
            link.transport.write(slot.pack())
            slot.out = bytearray()  # handed over, not copied

    def changed(self) -> None:
        """A worker said something: wake whoever waits for a window or a state change."""
        for waiters in (self.room, self.waiters):
            if waiters:
                woken = waiters[:]
                waiters.clear()
                for waiter in woken:
                    if not waiter.done():
                        waiter.set_result(None)

    async def wait_until(self, done: Callable[[], bool], limit: float, what: str) -> None:
        try:
            async with asyncio.timeout(limit):
                while not done():
                    waiter = self.loop.create_future()
                    self.waiters.append(waiter)
                    await waiter
        except TimeoutError:
            raise EngineUnavailable(
                f"the local engine's workers did not {what} in {limit} s"
            ) from None

    def close_link(self, slot: _Slot) -> None:
        link = slot.link
        if link is not None and link.transport is not None:
            link.transport.write(slot.pack())
            slot.out = bytearray()
            link.transport.close()  # after the STOP is written; the worker reads EOF next

    def close(self) -> None:
        # The loop may be closed already (an engine left without aclose()): then
        # nothing can be scheduled on it, and there is nothing left to wake either.
        with contextlib.suppress(RuntimeError):
            if self.watchdog is not None:
                self.watchdog.cancel()
            for task in self.tasks:
                task.cancel()
            for slot in self.engine._slots:
                self.detach(slot)
            self.changed()

    async def _watch(self, stall_timeout: float) -> None:
        """Replace a worker whose loop stopped turning (no frame, not even a heartbeat).

        Only time while this loop runs counts: a gap between ticks means the loop (and
        the caller driving it) was busy elsewhere, and restarts every worker's clock.
        """
        interval = _heartbeat(stall_timeout)
        assert interval is not None
        last_tick = time.monotonic()
        self.engine._resume_clocks(last_tick)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            if now - last_tick > 2 * interval:
                self.engine._resume_clocks(now)
            last_tick = now
            self.engine._stalled(now, stall_timeout)


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
