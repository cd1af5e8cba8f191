"""The local engine's bookkeeping, without I/O: which worker runs a job, what is in flight.

Every job the parent hands out gets a sequence number, a place in its worker's
:class:`Outbox` until the next send, and an entry in its worker's in-flight table until
that worker's Result for it arrives. That table is what makes the
engine lose nothing: when a worker dies, :meth:`Dispatcher.orphaned` hands back every
job it held, to be sent again to its replacement, or failed with ``WorkerCrashed`` once
a job has been on too many workers that died (a job that kills its worker every time
must not take the whole crawl down with it).

Jobs are sharded by origin (``crc32`` of ``scheme://host:port``), so one host's
connections, per-host limits and rate pacing live in one worker. With cookies on
(``ClientConfig.cookies``) they are sharded by site instead -- the host's registrable
domain by the Public Suffix List -- so every origin of a site, whose cookies are one
set, runs on the worker that holds them (an origin still maps to a single worker).
"""

from __future__ import annotations

import zlib
from itertools import repeat
from typing import Final

import msgspec

from ..errors import WorkerCrashed
from ..jobs import Job, Result, error_result
from ..runner import Sink
from ..url import URL

__all__ = ["Dispatcher", "EngineStats", "InFlight", "Outbox", "Sink"]

#: How many dead workers one job may outlive before it fails with WorkerCrashed.
DEFAULT_MAX_CRASHES: Final = 2
#: "origin": a host's jobs all go to one worker; "balanced": to the least busy worker.
SHARDINGS: Final = ("origin", "balanced")
#: URL prefixes whose shard is remembered (a crawl may touch millions of hosts).
_SHARD_CACHE: Final = 65536


class EngineStats(msgspec.Struct):
    """Counters of a local engine since it started."""

    submitted: int = 0
    completed: int = 0
    errors: int = 0
    """Results with an error (no response)."""
    crashes: int = 0
    """Workers that died and were replaced."""
    redispatched: int = 0
    """Jobs sent again because their worker died holding them."""
    shared_bodies: int = 0
    """Bodies that came through shared memory (the others came in their worker's frames:
    small ones always, large ones when the ring was full)."""


#: An in-flight job: the Job, where its Result goes, the workers that died holding it,
#: and its ``process=`` function id (0: none). A tuple: one is made per job.
InFlight = tuple[Job, Sink, int, int]


class Outbox:
    """The jobs assigned to one worker and not yet sent: its next job batch."""

    __slots__ = ("crashes", "jobs", "processes", "seqs")

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.jobs: list[Job] = []
        self.processes: dict[int, int] = {}
        """``{index: process id}`` for the jobs with a ``process=`` function."""
        self.crashes: dict[int, int] = {}
        """``{index: workers that died holding it}`` for the jobs sent again."""

    def resend(self, seq: int, job: Job, process: int, crashes: int) -> None:
        index = len(self.jobs)
        if process:
            self.processes[index] = process
        self.crashes[index] = crashes
        self.seqs.append(seq)
        self.jobs.append(job)

    def take(
        self,
    ) -> tuple[list[int], list[Job], dict[int, int], dict[int, int]] | None:
        """The batch to send (a :class:`~.wire.JobBatch` as a tuple), or None if empty."""
        if not self.seqs:
            return None
        batch = (self.seqs, self.jobs, self.processes, self.crashes)
        self.clear()
        return batch

    def clear(self) -> None:
        self.seqs, self.jobs, self.processes, self.crashes = [], [], {}, {}


def origin_key(url: str) -> str:
    """``scheme://host:port`` of ``url`` (the URL itself when it does not parse)."""
    try:
        origin = URL(url).origin
    except ValueError:
        return url
    return f"{origin.scheme}://{origin.host}:{origin.port}"


def site_key(url: str) -> str:
    """The registrable domain (eTLD+1) of ``url``'s host: every host whose cookies can
    meet maps to one key (the URL itself when it does not parse)."""
    try:
        host = URL(url).origin.host
    except ValueError:
        return url
    from ..cookies import site_of

    return site_of(host)


class Dispatcher:
    """Shards jobs over ``workers`` and tracks each one until its Result arrives."""

    def __init__(
        self,
        workers: int,
        window: int,
        *,
        max_crashes: int = DEFAULT_MAX_CRASHES,
        sharding: str = "origin",
        by_site: bool = False,
    ):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers}")
        if sharding not in SHARDINGS:
            raise ValueError(f"sharding must be 'origin' or 'balanced', not {sharding!r}")
        self.workers = workers
        self.balanced = sharding == "balanced"
        #: Shard by registrable domain (cookies on), not by origin.
        self._key = site_key if by_site else origin_key
        self.window = window
        self.max_crashes = max_crashes
        self.in_flight: list[dict[int, InFlight]] = [{} for _ in range(workers)]
        self.outboxes = [Outbox() for _ in range(workers)]
        self._stats = EngineStats()
        self._seq = 0
        self._shards: dict[str, int] = {}

    def shard(self, job: Job) -> int:
        if self.workers == 1:
            return 0
        if self.balanced:
            return self._least_busy()
        url = job.url
        end = url.find("/", url.find("://") + 3)
        prefix = url[:end] if end > 0 else url
        shard = self._shards.get(prefix)
        return self._new_shard(prefix, url) if shard is None else shard

    def _least_busy(self) -> int:
        tables = self.in_flight
        return min(range(self.workers), key=lambda i: len(tables[i]))

    def _new_shard(self, prefix: str, url: str) -> int:
        """The shard of ``url``, remembered for every URL of its ``prefix``: parsing
        every URL would cost more than everything else the parent does per job.

        The prefix is the URL up to the first ``/`` after ``://`` (the whole URL when
        there is none): its authority, and perhaps a query or fragment when a ``?`` or
        ``#`` comes first, so URLs with the same prefix have the same origin (and the
        same site). URLs of one origin may have several prefixes (``HTTP://Host`` and
        ``http://host``): each is computed once, from the URL parsed, to the same shard.
        A string without ``://`` is no URL a job can fetch (its worker answers
        InvalidURL), so it does not matter which such strings share a prefix.
        (:meth:`assign_many` computes the prefix inline, the same way.)
        """
        if len(self._shards) >= _SHARD_CACHE:
            self._shards.clear()
        shard = self._shards[prefix] = zlib.crc32(self._key(url).encode()) % self.workers
        return shard

    def has_room(self, worker: int) -> bool:
        return len(self.in_flight[worker]) < self.window

    @property
    def stats(self) -> EngineStats:
        stats = self._stats
        stats.submitted = self._seq - stats.redispatched  # not counted job by job
        return stats

    @property
    def total_in_flight(self) -> int:
        return sum(len(table) for table in self.in_flight)

    def assign(self, job: Job, sink: Sink, process: int = 0) -> bool:
        """Put ``job`` in the outbox of the worker for its origin, or return False when
        that worker's window is full (nothing is recorded then)."""
        return self.assign_many([job], sink, process) == 1

    def assign_many(self, jobs: list[Job], sink: Sink, process: int = 0) -> int:
        """:meth:`assign` each of ``jobs`` in order until one does not fit; returns how
        many were assigned.

        Run for every batch of jobs the parent hands out, so it does the least it can
        per job: no counter but the sequence number (``stats.submitted`` is derived
        from it), the shard looked up by the URL's ``scheme://authority`` inline, and
        with one worker the table and outbox filled by C-level ``update``/``extend``.
        """
        if self.workers == 1:
            return self._assign_to_one(jobs, sink, process)
        in_flight, outboxes, window = self.in_flight, self.outboxes, self.window
        shards, balanced = self._shards, self.balanced
        seq = self._seq
        assigned = 0
        try:
            for job in jobs:
                if balanced:
                    worker = self._least_busy()
                else:
                    url = job.url
                    end = url.find("/", url.find("://") + 3)
                    prefix = url[:end] if end > 0 else url
                    worker = shards.get(prefix)  # type: ignore[assignment]
                    if worker is None:
                        worker = self._new_shard(prefix, url)
                table = in_flight[worker]
                if len(table) >= window:
                    break
                seq += 1
                table[seq] = (job, sink, 0, process)
                outbox = outboxes[worker]
                if process:
                    outbox.processes[len(outbox.jobs)] = process
                outbox.seqs.append(seq)
                outbox.jobs.append(job)
                assigned += 1
        finally:
            self._seq = seq
        return assigned

    def _assign_to_one(self, jobs: list[Job], sink: Sink, process: int) -> int:
        table = self.in_flight[0]
        count = min(len(jobs), self.window - len(table))
        if count <= 0:
            return 0
        if count < len(jobs):
            jobs = jobs[:count]
        first = self._seq + 1
        self._seq += count
        seqs = range(first, first + count)
        table.update(zip(seqs, zip(jobs, repeat(sink), repeat(0), repeat(process)), strict=True))
        outbox = self.outboxes[0]
        if process:
            start = len(outbox.jobs)
            outbox.processes.update(zip(range(start, start + count), repeat(process)))
        outbox.seqs.extend(seqs)
        outbox.jobs.extend(jobs)
        return count

    def complete(self, worker: int, seqs: list[int], results: list[Result]) -> None:
        """Hand each Result to the sink of its job (Results of unknown jobs are dropped).

        The parent's cost per result is what bounds how many workers it can feed, so
        this is one dict pop and one call per Result; the counters move per batch.
        (Doing it in C-level passes -- ``map`` over the pops, one sink's calls by
        ``map`` -- costs more on CPython 3.11 for batches of 50: 20.3k -> 20.8k
        instructions per result.)
        """
        table = self.in_flight[worker]
        delivered = errors = 0
        for seq, result in zip(seqs, results, strict=True):
            entry = table.pop(seq, None)
            if entry is None:
                continue
            if result.error is not None:
                errors += 1
            delivered += 1
            entry[1](result)
        stats = self._stats
        stats.completed += delivered
        stats.errors += errors

    def orphaned(self, worker: int) -> list[tuple[Sink, Result]]:
        """``worker`` died: its jobs go back in its outbox under new numbers (for its
        replacement), and the Results of those given up on are returned.
        """
        table = self.in_flight[worker]
        self.in_flight[worker] = {}
        outbox = self.outboxes[worker]
        outbox.clear()  # what it held unsent is in the table too
        stats = self._stats
        stats.crashes += 1
        failed: list[tuple[Sink, Result]] = []
        for job, sink, crashes, process in table.values():
            crashes += 1
            if crashes > self.max_crashes:
                exc = WorkerCrashed(
                    f"the worker running this job died {crashes} times; giving up on it"
                )
                result = error_result(job, exc, worker=worker, attempts=crashes)
                stats.completed += 1
                stats.errors += 1
                failed.append((sink, result))
                continue
            self._seq += 1
            self.in_flight[worker][self._seq] = (job, sink, crashes, process)
            stats.redispatched += 1
            outbox.resend(self._seq, job, process, crashes)
        return failed

    def abandon(self, worker: int, reason: BaseException) -> list[tuple[Sink, Result]]:
        """``worker`` cannot be replaced: fail everything it held with ``reason``."""
        table = self.in_flight[worker]
        self.in_flight[worker] = {}
        self.outboxes[worker].clear()
        failed = []
        for job, sink, crashes, _ in table.values():
            result = error_result(job, reason, worker=worker, attempts=crashes + 1)
            self._stats.completed += 1
            self._stats.errors += 1
            failed.append((sink, result))
        return failed
