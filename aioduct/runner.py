"""Running many Jobs in one event loop: limits and politeness around each job.

:class:`JobRunner` is the one place a :class:`~aioduct.jobs.Job` becomes a
:class:`~aioduct.jobs.Result`. Every local-engine worker runs one on its io_uring loop, and
:class:`SendEngine` runs one on the caller's loop, so both engines enforce the same
limits the same way:

* ``concurrency``: requests in flight at once (in this loop);
* ``per_host_concurrency``: politeness towards each origin. The local engine shards
  jobs by origin, so one host's state lives in exactly one worker and the limit holds
  across the whole engine.

The bulk engines' ``retry=`` and ``per_host_rate=`` are the client's own layers
(:class:`~aioduct.retries.RetryLayer`, and a per-origin
:class:`~aioduct.RateLimit`): the engines put them in the ClientConfig the runner's
client is built from, so there is one retry loop and one rate limiter in the tree, and
a Result's ``attempts`` is its response's.

A Job never raises out of the runner: failures become Results with an error.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
)
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING, Any, Final, Protocol, Self, TypeVar

import msgspec

from . import processing
from .config import ClientConfig, check_option_names
from .errors import AioductError, DownloadError, InvalidURL
from .jobs import Job, Result, error_result, job_url, response_result
from .limits import per_host_rate_limit
from .politeness import HostGates
from .retries import RetryConfig
from .url import URL, Origin

if TYPE_CHECKING:
    from .client import Client

__all__ = ["BulkEngine", "JobRunner", "RunnerSettings", "SendEngine"]

JobsLike = Iterable[Job | str] | AsyncIterable[Job | str]
#: A submitted job, where its Result goes, and -- once it holds its host's slot -- its URL.
_Queued = tuple[Job, Callable[[Result], object], URL | None]
#: A loaded ``process=`` function and the spec it was imported from.
Process = tuple[str, "processing.Function"]
T = TypeVar("T")


class RunnerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How a job runner paces its jobs (sent to each local-engine worker as data)."""

    concurrency: int = 64
    per_host_concurrency: int | None = None
    keep_body: bool = True
    """``False`` drops response bodies from Results (``size`` still says how long)."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, not {self.concurrency}")
        if self.per_host_concurrency is not None and self.per_host_concurrency < 1:
            raise ValueError(f"per_host_concurrency must be >= 1, not {self.per_host_concurrency}")


class JobRunner:
    """Turns Jobs into Results on one client, within :class:`RunnerSettings`."""

    def __init__(self, client: Client, settings: RunnerSettings, *, worker: int = -1) -> None:
        self.client = client
        self.settings = settings
        self.worker = worker
        self._free = settings.concurrency
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        #: Jobs handed to :meth:`submit` and not yet taken by a lane; a job carries its
        #: parsed URL once it holds its host's slot (handed over after it was parked).
        self._queue: collections.deque[_Queued] = collections.deque()
        #: The lanes, each with the ``done`` of the job it runs (None between jobs).
        self._lanes: dict[asyncio.Task[None], Callable[[Result], object] | None] = {}
        #: Per-host slots. A ``run()`` caller waits at its host's gate with a future; a
        #: lane's job whose host is busy is *parked* there instead (its tuple is the
        #: ticket) and the lane takes the next job, so one busy host does not hold every
        #: lane while other hosts' jobs wait behind it.
        self._gates: HostGates[asyncio.Future[None] | _Queued] = HostGates(
            settings.per_host_concurrency
        )
        self._polite = self._gates.active
        self._retrying = client.config.retry is not None

    async def run(self, job: Job) -> Result:
        """Run ``job`` and describe the outcome; never raises an error.

        Retries, if configured, happen inside the request (the client's retry layer);
        the politeness gates stay around the whole job, retries included."""
        if self._free > 0:
            self._free -= 1
        else:
            await self._wait_for_slot()
        try:
            return await self._job(job)
        finally:
            self._release_slot()

    async def _job(self, job: Job, held: URL | None = None) -> Result:
        """One job, within its host's gate (the caller holds a concurrency slot; with
        ``held``, the job's parsed URL, the job also holds its host's slot already).

        One coroutine from the URL check to the Result, calling the client's pipeline
        coroutine itself (not ``Client.request``, which only awaits it): every coroutine
        between a lane and the wire is resumed again at each I/O wait of the request.
        """
        origin: Origin | None
        if held is not None:
            url, origin = held, held.origin
        else:
            try:
                url = job_url(job)
            except InvalidURL as exc:
                return error_result(job, exc, worker=self.worker)
            origin = url.origin if self._polite else None
            if origin is not None:
                await self._enter(origin)
        try:
            if job.save_to is not None:
                return await self._download(job, url)
            client = self.client
            try:
                response = await client._send(
                    job.method, url, job.request_options(), client._engine
                )
            except AioductError as exc:
                return error_result(job, exc, worker=self.worker, attempts=exc.attempts)
            except (ValueError, TypeError) as exc:  # a job the client refuses to build
                return error_result(job, InvalidURL(str(exc)), worker=self.worker)
            except Exception as exc:  # a bug below us: the job still gets its Result
                return error_result(job, exc, worker=self.worker)
            # (response.attempts is only set by the retry layer: skip its lookup without one)
            attempts = response.attempts if self._retrying else 1
            result = response_result(job, response, worker=self.worker, attempts=attempts)
            if not self.settings.keep_body:
                result.body = None
            return result
        finally:
            if origin is not None:
                self._leave(origin)

    # -- lanes: the bulk path --------------------------------------------------------------------

    def submit(self, job: Job, done: Callable[[Result], object]) -> None:
        """Queue ``job``; ``done(result)`` is called once it has finished.

        The bulk engines' path. A task per job would cost, per job, a task, its first
        step, a wait for a concurrency slot and a done callback -- each a trip through
        the event loop, and on the io_uring loop (whose loop machinery is Python, where
        uvloop's is C) more than the request itself took there. Instead up to
        ``concurrency`` *lanes* -- tasks that each hold one slot -- take the queued jobs
        one after another, and a lane ends when the queue is empty.
        """
        self._queue.append((job, done, None))
        if self._free > 0:
            self._free -= 1
            self._start_lane()

    @property
    def queued(self) -> int:
        """Jobs submitted and not yet started."""
        return len(self._queue)

    def _start_lane(self) -> None:
        task = asyncio.get_running_loop().create_task(self._lane())
        self._lanes[task] = None

    async def _lane(self) -> None:
        queue, run, lanes, gates = self._queue, self._job, self._lanes, self._gates
        task = asyncio.current_task()
        assert task is not None
        try:
            while queue:
                job, done, held = queue.popleft()
                if held is None and self._polite:
                    try:
                        held = job_url(job)
                    except InvalidURL as exc:
                        done(error_result(job, exc, worker=self.worker))
                        continue
                    if not gates.enter(held.origin, (job, done, held)):
                        continue  # parked: _leave queues it again with the slot
                lanes[task] = done
                done(await run(job, held))
        finally:
            del lanes[task]
            self._release_slot()

    async def withdraw(self, done: Callable[[Result], object] | None = None) -> None:
        """Forget the submitted jobs whose ``done`` equals ``done`` (every job: ``None``):
        queued ones are dropped, running ones cancelled; their ``done`` is not called."""
        queue = self._queue
        if done is None:
            queue.clear()
        else:
            kept = [item for item in queue if item[1] != done]
            queue.clear()
            queue.extend(kept)
        self._gates.drop_where(  # parked jobs hold no slot: forgetting them is enough
            lambda ticket: type(ticket) is tuple and (done is None or ticket[1] == done)
        )
        lanes = [lane for lane, job in self._lanes.items() if done is None or job == done]
        for lane in lanes:
            lane.cancel()
        if lanes:
            await asyncio.gather(*lanes, return_exceptions=True)

    # -- concurrency -----------------------------------------------------------------------------
    # A counter and a FIFO of futures rather than asyncio.Semaphore, whose uncontended
    # acquire scans its waiters on every call: this runs for every job of a crawl.

    async def _wait_for_slot(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._slot_waiters.append(waiter)
        try:
            await waiter  # _release_slot hands its slot over: _free stays as it is
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # the slot arrived with the cancellation: pass it on
            else:
                self._slot_waiters.remove(waiter)
            raise

    def _release_slot(self) -> None:
        waiters = self._slot_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        if self._queue:  # submitted jobs are waiting: the slot becomes a lane
            self._start_lane()
        else:
            self._free += 1

    async def _download(self, job: Job, url: URL) -> Result:
        """A ``save_to`` job: the whole range download here, in this worker."""
        assert job.save_to is not None
        headers = job.headers or None
        try:
            done = await self.client.download(url, job.save_to, chunks=job.chunks, headers=headers)
        except (AioductError, OSError, ValueError) as exc:
            error = exc if isinstance(exc, AioductError) else DownloadError(f"{exc}")
            return error_result(job, error, worker=self.worker)
        return Result(
            id=job.id,
            url=job.url,
            final_url=job.url,
            status=200,
            size=done.size,
            worker=self.worker,
            meta=job.meta,
            value={
                "path": str(done.path),
                "size": done.size,
                "chunks": done.chunks,
                "resumed": done.resumed,
                "elapsed": done.elapsed,
                "validator": done.validator,
            },
        )

    # -- politeness ------------------------------------------------------------------------------

    async def _enter(self, origin: Origin) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._gates.enter(origin, waiter):
            return
        try:
            await waiter  # _leave hands a slot over
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._leave(origin)  # the slot arrived with the cancellation: pass it on
            else:
                self._gates.withdraw(origin, waiter)
            raise

    def _leave(self, origin: Origin) -> None:
        while (waiter := self._gates.leave(origin)) is not None:
            if isinstance(waiter, tuple):  # a parked lane job: the slot is its now
                self._queue.appendleft(waiter)
                if self._free > 0:
                    self._free -= 1
                    self._start_lane()
                return
            if not waiter.done():
                waiter.set_result(None)
                return
            # cancelled while queued but not yet withdrawn: the slot goes to the next one


# -- the send engine as a bulk engine ------------------------------------------------------------

#: Results a map may hold undelivered per unit of concurrency (bounds memory).
_WINDOW_FACTOR: Final = 2


Sink = Callable[[Result], None]


#: Start the leading jobs of a list that fit, in order (their Results go to the sink);
#: returns how many were started.
SubmitMany = Callable[[list[Job], Sink], int]


class Submitter(Protocol):
    """Where :func:`map_batches` sends jobs: one engine's way of running them."""

    def submit(self, jobs: list[Job], sink: Sink) -> int:
        """Start the leading ``jobs`` there is room for, in order (their Results go to
        ``sink``); returns how many were started."""

    def submitted(self) -> None:
        """Jobs were submitted since the last call: send them on their way."""

    def wait_for_room(self, waiter: asyncio.Future[None]) -> None:
        """Resolve ``waiter`` once a refused job may fit (or raise: the engine is gone)."""


class Window:
    """One map's jobs in flight: at most ``size`` unanswered (running, or finished and
    not yet taken), pulled from the source only as room appears -- so an endless
    generator of URLs is fine. Jobs the engine has no room for are held at the head of
    the line: no job is pulled past them until they fit.
    """

    __slots__ = ("done", "exhausted", "held", "number", "outstanding", "sink", "size", "submit")

    def __init__(self, size: int, submit: SubmitMany) -> None:
        self.size = size
        self.submit = submit
        self.number = 0
        """Items pulled so far: a job without an id is numbered by its input position."""
        self.done: list[Result] = []
        self.sink: Sink = self.done.append
        """Where the engine puts Results (a bound ``append``: the cheapest call there is)."""
        self.outstanding = 0
        self.held: list[Job] = []
        self.exhausted = False

    def fill(self, source: Iterator[Job | str]) -> int:
        """Submit jobs from ``source`` (Jobs or URL strings) until the window is full,
        some are held or it ends; returns how many went (held ones included). Run for
        every batch of jobs the parent hands out, so the items come in one ``islice``
        and go in one call."""
        sent = self._retry_held()
        room = self.size - self.outstanding
        if self.held or self.exhausted or room <= 0:
            return sent
        items = list(islice(source, room))
        if len(items) < room:
            self.exhausted = True
        return sent + self._offer(items)

    async def afill(self, source: AsyncIterator[Job | str]) -> int:
        """:meth:`fill` from an async source, each job offered as soon as it comes: an
        async source may take its time, and the jobs it gave meanwhile should run."""
        sent = self._retry_held()
        while not self.held and not self.exhausted and self.outstanding < self.size:
            item = await anext(source, _END)
            if item is _END:
                self.exhausted = True
                break
            sent += self._offer([item])
        return sent

    def _retry_held(self) -> int:
        """Offer the held jobs again; how many went."""
        held = self.held
        if not held:
            return 0
        sent = self.submit(held, self.sink)
        self.outstanding += sent
        del held[:sent]
        return sent

    def _offer(self, items: list[Job | str]) -> int:
        number = self.number
        self.number = number + len(items)
        jobs = [
            Job(url=item, id=n) if type(item) is str else _numbered(item, n)
            for n, item in enumerate(items, number)
        ]
        sent = self.submit(jobs, self.sink)
        self.outstanding += sent
        if sent < len(jobs):
            self.held = jobs[sent:]
        return sent

    def take(self) -> list[Result]:
        """The Results finished since the last call, in completion order."""
        batch = self.done[:]
        self.done.clear()
        self.outstanding -= len(batch)
        return batch

    @property
    def finished(self) -> bool:
        """Every job was pulled and every Result taken."""
        return self.exhausted and self.outstanding == 0 and not self.held


async def map_batches(
    jobs: JobsLike, window: int, engine: Submitter
) -> AsyncGenerator[list[Result], None]:
    """Run ``jobs`` on ``engine``, yielding batches of Results in completion order
    (at most ``window`` jobs unanswered at any time: see :class:`Window`)."""
    loop = asyncio.get_running_loop()
    flow = Window(window, engine.submit)
    wake: asyncio.Future[None] | None = None
    append = flow.done.append

    def sink(result: Result) -> None:
        append(result)
        if wake is not None and not wake.done():
            wake.set_result(None)

    flow.sink = sink
    sync = not isinstance(jobs, AsyncIterable)
    source = iter(jobs) if sync else aiter(jobs)  # type: ignore[arg-type]
    try:
        while True:
            if sync:
                sent = flow.fill(source)  # type: ignore[arg-type]
            else:
                sent = await flow.afill(source)  # type: ignore[arg-type]
            if sent:
                engine.submitted()
            if flow.done:
                yield flow.take()
                continue
            if flow.finished:
                return
            wake = loop.create_future()
            if flow.held:
                engine.wait_for_room(wake)
            await wake
            wake = None
    finally:
        close = getattr(source, "aclose" if not sync else "close", None)
        if close is not None:
            result = close()
            if not sync:
                await result


class _Lanes:
    """The send engine's Submitter: the runner's lanes (:meth:`JobRunner.submit`) on this
    loop, with a ``process=`` function applied to each Result before it is delivered."""

    def __init__(self, runner: JobRunner, process: Process | None = None) -> None:
        self.runner = runner
        self.process = process
        self.done: Callable[[Result], object] | None = None

    def submit(self, jobs: list[Job], sink: Sink) -> int:
        done = self.done
        if done is None:  # one map, one sink: its jobs are withdrawn together
            done = self.done = sink if self.process is None else partial(self._deliver, sink)
        submit = self.runner.submit
        for job in jobs:
            submit(job, done)
        return len(jobs)

    def _deliver(self, sink: Sink, result: Result) -> None:
        assert self.process is not None
        spec, function = self.process
        sink(processing.decoded(processing.run(function, spec, result)))

    def submitted(self) -> None:  # the lanes take jobs as they come
        pass

    def wait_for_room(self, waiter: asyncio.Future[None]) -> None:  # always has room
        waiter.set_result(None)

    async def cancel(self) -> None:
        if self.done is not None:
            await self.runner.withdraw(self.done)


async def amap_jobs(
    runner: JobRunner, jobs: JobsLike, process: Process | None = None
) -> AsyncGenerator[list[Result], None]:
    """:func:`map_batches` on the runner's lanes in this loop; unfinished jobs are cancelled."""
    tasks = _Lanes(runner, process)
    batches = map_batches(jobs, runner.settings.concurrency * _WINDOW_FACTOR, tasks)
    try:
        async for batch in batches:
            yield batch
    finally:
        await batches.aclose()
        await tasks.cancel()


#: What ``next()`` returns once a source is exhausted (None could be an item).
_END: Final[Any] = object()


def _numbered(item: Job | str, number: int) -> Job:
    if type(item) is str:
        return Job(url=item, id=number)
    job = Job.coerce(item)
    if job.id is not None:
        return job
    numbered: Job = copy.copy(job)  # a third cheaper than msgspec.structs.replace
    msgspec.structs.force_setattr(numbered, "id", number)
    return numbered


class BulkEngine:
    """What both bulk engines share: the blocking twins of an async core, and contexts.

    A subclass provides the async core -- ``_batches(jobs, process)`` (an async
    generator of Result lists, in completion order), ``arequest_job(job)``, ``start()``
    and ``aclose()`` -- and gets ``amap``/``arequest``/``async with`` on the caller's
    loop, and ``map``/``request``/``with`` on a private loop (:meth:`_new_private_loop`)
    driven from the calling thread, so Ctrl-C lands in the caller's frame and unwinds
    through ``with``. (:class:`~aioduct.LocalEngine` drives its blocking side without an
    event loop and overrides those.)

    ``process="package.module:function"`` on ``map``/``amap`` applies ``function`` to
    each Result where the engine runs the job (``process_options=``: keyword arguments
    for each call) and yields Results carrying its return value (see
    :mod:`aioduct.processing`).
    """

    name: str
    _loop_runner: asyncio.Runner | None = None

    # -- the async core (subclasses) -------------------------------------------------------------

    async def start(self) -> None:
        """Get ready to run jobs (``async with`` and ``with`` call it)."""

    async def aclose(self) -> None:
        raise NotImplementedError

    def _batches(
        self, jobs: JobsLike, process: processing.Spec | None = None
    ) -> AsyncGenerator[list[Result], None]:
        raise NotImplementedError

    async def arequest_job(self, job: Job) -> Result:
        """Run one Job and return its Result (errors are in ``result.error``)."""
        raise NotImplementedError

    # -- async -----------------------------------------------------------------------------------

    async def amap(
        self,
        jobs: JobsLike,
        *,
        process: str | None = None,
        process_options: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[Result]:
        """Results of ``jobs`` (Jobs or URL strings, sync or async iterable), as they finish."""
        batches = self._batches(jobs, processing.spec(process, process_options))
        try:
            async for batch in batches:
                for result in batch:
                    yield result
        finally:
            await batches.aclose()

    async def arequest(self, method: str, url: str, **job: Any) -> Result:
        """Run one request (Job fields as keywords) and return its Result."""
        return await self.arequest_job(Job(method=method, url=url, **job))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- blocking --------------------------------------------------------------------------------

    def _new_private_loop(self) -> asyncio.AbstractEventLoop:
        """The loop ``map``/``request``/``with`` drive: uvloop's when installed."""
        from .client import new_event_loop

        return new_event_loop()

    def _blocking(self) -> asyncio.Runner:
        if self._loop_runner is None:
            self._loop_runner = asyncio.Runner(loop_factory=self._new_private_loop)
        return self._loop_runner

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on the private loop, from the calling thread.

        Not ``Runner.run``: on CPython 3.11 each call looks up the SIGINT handler in a way
        that formats ``repr()`` of the task -- and of its result, e.g. a batch holding
        whole response bodies (~6 ms per MB, twice per call). Ctrl-C still lands here:
        the task is cancelled and unwound before the KeyboardInterrupt goes on.
        """
        loop = self._blocking().get_loop()
        task = loop.create_task(coro)
        try:
            return loop.run_until_complete(task)
        except BaseException:
            task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(task)
            raise

    def map(
        self,
        jobs: Iterable[Job | str],
        *,
        process: str | None = None,
        process_options: Mapping[str, Any] | None = None,
    ) -> Iterator[Result]:
        """Results of ``jobs`` as they finish (blocking; best inside ``with engine:``)."""
        return self._drain(self._batches(jobs, processing.spec(process, process_options)))

    def _drain(self, batches: AsyncGenerator[list[Result], None]) -> Iterator[Result]:
        try:
            while True:
                batch = self._run(_next_batch(batches))
                if batch is None:
                    return
                yield from batch
        finally:
            with contextlib.suppress(RuntimeError):  # interrupted mid-step: already closing
                self._run(batches.aclose())

    def request(self, method: str, url: str, **job: Any) -> Result:
        """Blocking :meth:`arequest`."""
        return self._run(self.arequest(method, url, **job))

    def close(self) -> None:
        """Blocking :meth:`aclose`."""
        runner = self._loop_runner
        if runner is None:
            return
        with contextlib.suppress(RuntimeError):
            self._run(self.aclose())
        runner.close()
        self._loop_runner = None

    def __enter__(self) -> Self:
        self._run(self.start())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SendEngine(BulkEngine):
    """The send engine as a bulk engine: ``map()`` over Jobs in this process, one loop.

    The same interface as :class:`~aioduct.LocalEngine`, for machines without io_uring,
    for small jobs, and for ``engine="auto"``'s fallback::

        with aioduct.SendEngine(concurrency=50) as engine:
            for result in engine.map(urls):
                print(result.status, result.url)
    """

    name = "send"

    def __init__(
        self,
        *,
        config: ClientConfig | None = None,
        concurrency: int = 64,
        per_host_concurrency: int | None = None,
        per_host_rate: float | None = None,
        retry: RetryConfig | int | None = None,
        keep_body: bool = True,
        **options: Any,
    ) -> None:
        from .client import Client

        self.settings = RunnerSettings(
            concurrency=concurrency, per_host_concurrency=per_host_concurrency, keep_body=keep_body
        )
        cache = options.pop("cache", None)  # a Cache object is code: it goes to the Client
        config = with_runner_policies(
            bulk_config(config, options, concurrency), retry=retry, per_host_rate=per_host_rate
        )
        self._client = Client(config=config, cache=cache)
        self.config = self._client.config
        self._runner = JobRunner(self._client, self.settings)

    def _batches(
        self, jobs: JobsLike, process: processing.Spec | None = None
    ) -> AsyncGenerator[list[Result], None]:
        # Not a generator itself: a process= function is imported here, when map() or
        # amap() is called, so an import error raises in the caller's frame.
        return amap_jobs(self._runner, jobs, _load(process))

    async def arequest_job(self, job: Job) -> Result:
        return await self._runner.run(job)

    async def aclose(self) -> None:
        await self._runner.withdraw()
        await self._client.aclose()


def _load(process: processing.Spec | None) -> Process | None:
    return None if process is None else (process.function, processing.load(process))


async def _next_batch(batches: AsyncGenerator[list[Result], None]) -> list[Result] | None:
    return await anext(batches, None)


def bulk_config(
    config: ClientConfig | None, options: dict[str, Any], concurrency: int
) -> ClientConfig:
    """The ClientConfig for a bulk engine: pool sizes follow ``concurrency`` unless set.

    A job runner starts each job as its own task, so a finished request's connection goes
    back to the pool a loop turn before the next job takes it. With the Client defaults
    (10 idle per host) a burst of completions would close the connections above 10, only
    for the next jobs to open new ones: at 50 in flight against one host that churned a
    new connection for almost every request. Keeping up to ``concurrency`` idle (and
    allowing that many open) is what a bulk run needs; explicit values always win.
    """
    check_option_names(options)
    if config is not None:
        return config.replace(**options) if options else config
    options = dict(options)
    options.setdefault("pool_max_idle_per_host", max(10, concurrency))
    options.setdefault("max_connections", max(100, concurrency))
    return ClientConfig(**options)


def with_runner_policies(
    config: ClientConfig, *, retry: RetryConfig | int | None, per_host_rate: float | None
) -> ClientConfig:
    """``config`` with a bulk engine's ``retry=`` and ``per_host_rate=`` in it.

    Both are client layers now (one implementation for every client): ``retry`` becomes
    ``config.retry``, ``per_host_rate=r`` is ``rate_limit=RateLimit(r, per_host=True)``.
    Given both ways, they must agree.
    """
    changes: dict[str, Any] = {}
    retry_config = _retry(retry)
    if retry_config is not None:
        if config.retry is not None and config.retry != retry_config:
            raise ValueError(
                "retry= was given to the engine and in its config, differently: set it once"
            )
        changes["retry"] = retry_config
    limit = per_host_rate_limit(per_host_rate)
    if limit is not None:
        if config.rate_limit is not None and config.rate_limit != limit:
            raise ValueError(
                "per_host_rate= is rate_limit=aioduct.RateLimit(per_host_rate), and the config "
                "has another rate_limit: set one of them"
            )
        changes["rate_limit"] = limit
    return config.replace(**changes) if changes else config


def _retry(retry: RetryConfig | int | None) -> RetryConfig | None:
    """``retry=3`` is shorthand for ``RetryConfig(max_retries=3)``; 0 or None: no retries."""
    if retry is None or isinstance(retry, RetryConfig):
        return retry
    if isinstance(retry, bool) or not isinstance(retry, int):
        raise TypeError(f"retry must be a RetryConfig, a number of retries or None, not {retry!r}")
    return RetryConfig(max_retries=retry) if retry > 0 else None
