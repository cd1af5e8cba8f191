"""The local engine's bookkeeping, without I/O: which worker runs a job, what is in flight.

Every job the parent hands out gets a sequence number and an entry in its worker's
in-flight table until that worker's Result for it arrives. That table is what makes the
engine lose nothing: when a worker dies, :meth:`Dispatcher.orphaned` hands back every
job it held, to be sent again to its replacement, or failed with ``WorkerCrashed`` once
a job has been on too many workers that died (a job that kills its worker every time
must not take the whole crawl down with it).

Jobs are sharded by origin (``crc32`` of ``scheme://host:port``), so one host's
connections, per-host limits and rate pacing live in one worker.
"""

from __future__ import annotations

import re
import zlib
from typing import Final

import msgspec

from ..errors import WorkerCrashed
from ..jobs import Job, Result, error_result
from ..runner import Sink
from ..url import URL

__all__ = ["Dispatcher", "EngineStats", "Sink"]

#: How many dead workers one job may outlive before it fails with WorkerCrashed.
DEFAULT_MAX_CRASHES: Final = 2
_AUTHORITY: Final = re.compile(r"[^/?#]*")
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


class _InFlight:
    __slots__ = ("crashes", "job", "sink")

    def __init__(self, job: Job, sink: Sink, crashes: int = 0) -> None:
        self.job = job
        self.sink = sink
        self.crashes = crashes


def origin_key(url: str) -> str:
    """``scheme://host:port`` of ``url`` (the URL itself when it does not parse)."""
    try:
        origin = URL(url).origin
    except ValueError:
        return url
    return f"{origin.scheme}://{origin.host}:{origin.port}"


class Dispatcher:
    """Shards jobs over ``workers`` and tracks each one until its Result arrives."""

    def __init__(
        self,
        workers: int,
        window: int,
        *,
        max_crashes: int = DEFAULT_MAX_CRASHES,
        sharding: str = "origin",
    ):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers}")
        if sharding not in SHARDINGS:
            raise ValueError(f"sharding must be 'origin' or 'balanced', not {sharding!r}")
        self.workers = workers
        self.balanced = sharding == "balanced"
        self.window = window
        self.max_crashes = max_crashes
        self.in_flight: list[dict[int, _InFlight]] = [{} for _ in range(workers)]
        self.stats = EngineStats()
        self._seq = 0
        self._shards: dict[str, int] = {}

    def shard(self, job: Job) -> int:
        if self.workers == 1:
            return 0
        if self.balanced:  # the worker with the fewest jobs in hand
            tables = self.in_flight
            return min(range(self.workers), key=lambda i: len(tables[i]))
        url = job.url
        # Cache by the URL's text up to its path: parsing every URL would cost more
        # than everything else the parent does per job.
        scheme_end = url.find("://")
        end = _AUTHORITY.match(url, scheme_end + 3).end() if scheme_end >= 0 else len(url)  # type: ignore[union-attr]
        prefix = url[:end]
        shard = self._shards.get(prefix)
        if shard is None:
            if len(self._shards) >= _SHARD_CACHE:
                self._shards.clear()
            shard = self._shards[prefix] = zlib.crc32(origin_key(url).encode()) % self.workers
        return shard

    def has_room(self, worker: int) -> bool:
        return len(self.in_flight[worker]) < self.window

    @property
    def total_in_flight(self) -> int:
        return sum(len(table) for table in self.in_flight)

    def assign(self, worker: int, job: Job, sink: Sink) -> int:
        """Record ``job`` as sent to ``worker``; returns the sequence number to send it with."""
        self._seq += 1
        self.in_flight[worker][self._seq] = _InFlight(job, sink)
        self.stats.submitted += 1
        return self._seq

    def complete(self, worker: int, seq: int, result: Result) -> Sink | None:
        """Match a Result to its job; returns the sink it belongs to (None if unknown)."""
        entry = self.in_flight[worker].pop(seq, None)
        if entry is None:
            return None
        if entry.crashes:
            result.attempts += entry.crashes
        self.stats.completed += 1
        if result.error is not None:
            self.stats.errors += 1
        return entry.sink

    def orphaned(self, worker: int) -> tuple[list[tuple[int, Job]], list[tuple[Sink, Result]]]:
        """``worker`` died: its jobs to send again, and the Results of those given up on."""
        table = self.in_flight[worker]
        self.in_flight[worker] = {}
        self.stats.crashes += 1
        resend: list[tuple[int, Job]] = []
        failed: list[tuple[Sink, Result]] = []
        for entry in table.values():
            entry.crashes += 1
            if entry.crashes > self.max_crashes:
                exc = WorkerCrashed(
                    f"the worker running this job died {entry.crashes} times; giving up on it"
                )
                result = error_result(entry.job, exc, worker=worker, attempts=entry.crashes)
                self.stats.completed += 1
                self.stats.errors += 1
                failed.append((entry.sink, result))
                continue
            self._seq += 1
            self.in_flight[worker][self._seq] = entry
            self.stats.redispatched += 1
            resend.append((self._seq, entry.job))
        return resend, failed

    def abandon(self, worker: int, reason: BaseException) -> list[tuple[Sink, Result]]:
        """``worker`` cannot be replaced: fail everything it held with ``reason``."""
        table = self.in_flight[worker]
        self.in_flight[worker] = {}
        failed = []
        for entry in table.values():
            result = error_result(entry.job, reason, worker=worker, attempts=entry.crashes + 1)
            self.stats.completed += 1
            self.stats.errors += 1
            failed.append((entry.sink, result))
        return failed
