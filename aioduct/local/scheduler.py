"""JobScheduler: a worker's limits, politeness and retries, as callbacks.

:class:`~aioduct.runner.JobRunner` enforces ``concurrency``, ``per_host_concurrency``,
``per_host_rate`` and ``retry`` with a coroutine per job (a semaphore, futures, sleeps).
The worker's fast path has no coroutine to await in, so this module waits with plain
state and ``loop.call_at`` where JobRunner awaits: a FIFO of jobs waiting for a slot,
the same :class:`~aioduct.politeness.HostGates` per origin (slots handed over FIFO,
starts spaced by ``1/rate``), and retries
decided by the shared :class:`~aioduct.RetryConfig` (so both engines retry the same
errors and statuses and wait the same backoff). The order of those steps is JobRunner's:
slot first, then the host gate, and both are held across the retries' waits.

Each attempt runs on the :class:`~aioduct.local.fastpath.FastPath` when it accepts the
job (plain ``http://``, a small body, nothing exotic), otherwise through the worker's
pipeline client as one ``Client.request`` call; either way the outcome comes back to
:meth:`JobScheduler._outcome`, which retries or emits the Result.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import AioductError, InvalidURL
from ..headers import Headers
from ..jobs import Job, Result, error_result, job_url, response_result
from ..politeness import HostGates
from ..runner import RunnerSettings
from ..url import URL, Origin
from .fastpath import FastPath, unsupported_reason

if TYPE_CHECKING:
    from ..client import Client

__all__ = ["JobScheduler"]

#: ``emit(seq, result)``: a job's final Result.
Emit = Callable[[int, Result], None]


class _Entry:
    """A job between submission and its Result."""

    __slots__ = ("attempt", "gated", "job", "origin", "seq", "url")

    def __init__(self, seq: int, job: Job, url: URL) -> None:
        self.seq = seq
        self.job = job
        self.url = url
        self.origin: Origin = url.origin
        self.attempt = 0
        self.gated = False


class JobScheduler:
    """Runs submitted Jobs within :class:`RunnerSettings`; ``emit`` gets each Result.

    ``fast=False`` (or a config the driver does not support) sends every attempt through
    the pipeline; the limits and retries are then still this class's.
    """

    def __init__(
        self,
        client: Client,
        settings: RunnerSettings,
        emit: Emit,
        *,
        worker: int = -1,
        fast: bool = True,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.client = client
        self.settings = settings
        self.emit = emit
        self.worker = worker
        self.fast: FastPath | None = None
        if fast and unsupported_reason(client.config, settings.concurrency) is None:
            self.fast = FastPath(
                self.loop,
                client,
                worker=worker,
                keep_body=settings.keep_body,
                done=self._outcome,
            )
        self._retry = settings.retry
        self._concurrency = settings.concurrency
        self._active = 0
        self._queue: collections.deque[_Entry] = collections.deque()
        self._starting = False
        self._gates: HostGates[_Entry] = HostGates(
            settings.per_host_concurrency, settings.per_host_rate
        )
        self._polite = self._gates.active
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._closed = False
        self._waiting: dict[int, asyncio.Future[Result]] = {}
        self._next_private = 0
        #: Attempts run by the fast path and by the pipeline (for tests and profiling).
        self.fast_attempts = 0
        self.pipeline_attempts = 0

    # -- submission ------------------------------------------------------------------------------

    def submit(self, seq: int, job: Job) -> None:
        """Run ``job``; its Result goes to ``emit(seq, result)`` (maybe before this returns)."""
        try:
            url = job_url(job)
        except InvalidURL as exc:
            self._emit(seq, error_result(job, exc, worker=self.worker))
            return
        self._queue.append(_Entry(seq, job, url))
        if not self._starting:
            self._start_queued()

    async def run(self, job: Job) -> Result:
        """Run one job and wait for its Result (tests, and callers without a wire)."""
        future: asyncio.Future[Result] = self.loop.create_future()
        self._next_private -= 1
        seq = self._next_private  # negative: never a parent's sequence number
        self._waiting[seq] = future
        try:
            self.submit(seq, job)
            return await future
        finally:
            self._waiting.pop(seq, None)

    def _emit(self, seq: int, result: Result) -> None:
        if seq < 0:
            future = self._waiting.get(seq)
            if future is not None and not future.done():
                future.set_result(result)
            return
        self.emit(seq, result)

    def _start_queued(self) -> None:
        # A loop, not recursion: attempts may finish synchronously (a refused request
        # head), and each finish frees a slot for the next queued job.
        self._starting = True
        try:
            queue = self._queue
            while queue and self._active < self._concurrency and not self._closed:
                entry = queue.popleft()
                self._active += 1
                if self._polite:
                    self._enter(entry)
                else:
                    self._attempt(entry)
        finally:
            self._starting = False

    # -- politeness ------------------------------------------------------------------------------

    def _enter(self, entry: _Entry) -> None:
        entry.gated = True
        start = self._gates.enter(entry.origin, entry, self.loop.time())
        if start is not None:  # else queued: _leave hands a slot over
            self._start_at(entry, start)

    def _start_at(self, entry: _Entry, start: float) -> None:
        delay = start - self.loop.time()
        if delay > 0:
            self._later(delay, self._attempt, entry)
        else:
            self._attempt(entry)

    def _leave(self, entry: _Entry) -> None:
        if not entry.gated:
            return
        entry.gated = False
        handed = self._gates.leave(entry.origin, self.loop.time())
        if handed is not None:
            self._start_at(*handed)

    # -- attempts --------------------------------------------------------------------------------

    def _attempt(self, entry: _Entry) -> None:
        if self._closed:
            return
        entry.attempt += 1
        fast = self.fast
        if fast is not None and fast.accepts(entry.job, entry.url):
            self.fast_attempts += 1
            fast.run(entry, entry.job, entry.url)
            return
        self.pipeline_attempts += 1
        task = self.loop.create_task(self._pipeline(entry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pipeline(self, entry: _Entry) -> None:
        """One attempt through ``Client.request`` (JobRunner's call, without its loop)."""
        job = entry.job
        options = job.request_options()
        try:
            response = await self.client.request(job.method, entry.url, **options)
        except AioductError as exc:
            self._outcome(entry, None, exc)
            return
        except (ValueError, TypeError) as exc:  # a job the client refuses to build
            self._finish(entry, error_result(job, InvalidURL(str(exc)), worker=self.worker))
            return
        result = response_result(job, response, worker=self.worker)
        if not self.settings.keep_body:
            result.body = None
        self._outcome(entry, result, None)

    def _outcome(self, entry: _Entry, result: Result | None, error: AioductError | None) -> None:
        """An attempt ended: retry it (after a backoff) or emit its Result."""
        if self._closed:
            return
        retry = self._retry
        attempt = entry.attempt
        if result is None:
            assert error is not None
            delay = None if retry is None else retry.next_delay(attempt, error=error)
            if delay is not None:
                self._later(delay, self._attempt, entry)
                return
            result = error_result(entry.job, error, worker=self.worker, attempts=attempt)
            self._finish(entry, result)
            return
        if retry is not None and retry.retries_status(result.status):
            retry_after = Headers._adopt(list(result.headers)).get("retry-after")
            delay = retry.next_delay(attempt, status=result.status, retry_after=retry_after)
            if delay is not None:
                self._later(delay, self._attempt, entry)
                return
        result.attempts = attempt
        self._finish(entry, result)

    def _finish(self, entry: _Entry, result: Result) -> None:
        if self._polite:
            self._leave(entry)
        self._active -= 1
        self._emit(entry.seq, result)
        if self._queue and not self._starting:
            self._start_queued()

    def _later(self, delay: float, callback: Callable[[_Entry], None], entry: _Entry) -> None:
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            callback(entry)

        handle = self.loop.call_later(delay, fire)
        self._timers.add(handle)

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Jobs holding a slot (running, paced or waiting to retry)."""
        return self._active

    async def aclose(self) -> None:
        """Stop: jobs in hand are abandoned (their Results are never emitted)."""
        self._closed = True
        self._queue.clear()
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        if self.fast is not None:
            self.fast.close()
            tasks = list(self.fast._tasks)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
