"""Worker-side measurement: run fetches continuously, snapshot counters and rusage twice.

Load is kept constant across the measured window: workers (asyncio tasks or threads) start
before the warm-up and never stop until after the second snapshot, so there is no ramp-up or
drain inside the window. Counting happens in per-worker `Tally` objects, read by the timer
side, so the hot loop pays one attribute increment per request.

CPU is `getrusage(RUSAGE_SELF)` user+sys of the whole process, so client threads (libcurl's
resolver, tokio's runtime) are charged to the client that started them, plus whatever a
client registers in `EXTRA_CPU` (the local engine's worker processes, read from /proc).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import resource
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benches.scenarios import Target
from benches.streams import FORM_OVERHEAD, file_sha256

Fetched = tuple[int, Any]  # (status, payload): bytes-like, str or decoded JSON per target.decode
AsyncFetch = Callable[[], Awaitable[Fetched]]
SyncFetch = Callable[[], Fetched]
AsyncOpen = Callable[[Target], AbstractAsyncContextManager[AsyncFetch]]
SyncOpen = Callable[[Target], AbstractContextManager[SyncFetch]]


#: CPU seconds of processes a client started (its own process is measured anyway), added to
#: every snapshot: a multi-process client is charged for all of its processes.
EXTRA_CPU: list[Callable[[], float]] = []
#: Of those, the seconds spent in the kernel (system time), for the user/kernel split.
EXTRA_SYS: list[Callable[[], float]] = []

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_ticks(pid: int) -> tuple[int, int] | None:
    """User and system ticks of a live process, from ``/proc/PID/stat`` (None: gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[11]), int(fields[12])


def processes_cpu(pids: list[int]) -> float:
    """CPU seconds of live processes, from /proc (0 for any that is gone).

    ``schedstat`` counts nanoseconds; ``stat``'s user+sys ticks (10 ms) are the fallback,
    too coarse to split a 2 s run's CPU between a parent and its workers.
    """
    total = 0.0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
            continue
        except (OSError, ValueError, IndexError):
            pass
        ticks = _stat_ticks(pid)
        if ticks is not None:
            total += sum(ticks) / _TICK
    return total


def processes_sys(pids: list[int]) -> float:
    """System (kernel) CPU seconds of live processes, from ``/proc/PID/stat`` (ticks)."""
    return sum(ticks[1] for pid in pids if (ticks := _stat_ticks(pid)) is not None) / _TICK


class BadResponse(Exception):
    """A response that does not match the reference: counted as an error, never as a request."""


def check(target: Target, status: int, payload: Any) -> None:
    """The per-response check, identical for every client (O(1) for bodies, == for text/JSON)."""
    if status != target.status:
        raise BadResponse(f"status {status}, expected {target.status}")
    if target.kind != "request":
        _check_stream(target, payload)
    elif target.decode == "json":
        if payload != target.json_value:
            raise BadResponse(f"JSON {payload!r:.80} != reference")
    elif target.decode == "text":
        if payload != target.text:
            raise BadResponse(f"text {payload!r:.80} != reference")
    elif len(payload) != target.length:
        raise BadResponse(f"body of {len(payload)} bytes, expected {target.length}")


def _check_stream(target: Target, payload: Any) -> None:
    """The per-response check of the streams-and-formats scenarios (benches.streams).

    Payloads: ``sse`` the list of each event's data; ``multipart`` and ``upload_stream``
    nginx's reply ``"POST <bytes received> <Transfer-Encoding>"`` (benches.streams);
    ``body_stream`` the list of chunks read; ``download`` the path of the file written.
    """
    kind = target.kind
    if kind == "sse":
        if len(payload) != target.length:
            raise BadResponse(f"{len(payload)} events, expected {target.length}")
    elif kind == "multipart":
        method, _, rest = str(payload).partition(" ")
        received = rest.partition(" ")[0]
        size = int(received) if received.isdigit() else -1
        if method != "POST" or not target.length < size <= target.length + FORM_OVERHEAD:
            raise BadResponse(f"nginx saw {payload!r:.80}: not a form with the file")
    elif kind == "upload_stream":
        if payload != target.text:  # every byte arrived, and it went chunked
            raise BadResponse(f"nginx saw {payload!r:.80}, expected {target.text!r}")
    elif kind == "body_stream":
        if sum(map(len, payload)) != target.length:
            raise BadResponse(f"chunks of {sum(map(len, payload))} bytes, not {target.length}")
    elif kind == "download":
        size = os.path.getsize(payload)
        if size != target.length:
            raise BadResponse(f"file of {size} bytes, expected {target.length}")


def check_first(target: Target, status: int, payload: Any) -> None:
    """The full check, once per worker slot: also hashes raw bodies against the reference."""
    check(target, status, payload)
    kind = target.kind
    if kind == "request":
        if target.decode == "bytes" and hashlib.sha256(payload).hexdigest() != target.sha256:
            raise BadResponse("body bytes differ from the reference (sha256)")
    elif kind == "sse":
        if list(payload) != target.json_value:
            raise BadResponse("the events' data differ from the reference")
    elif kind == "body_stream":
        digest = hashlib.sha256()
        for chunk in payload:
            digest.update(chunk)
        if digest.hexdigest() != target.sha256:
            raise BadResponse("streamed bytes differ from the reference (sha256)")
    elif kind == "download" and file_sha256(payload) != target.sha256:
        raise BadResponse("the downloaded file differs from the reference (sha256)")


class Tally:
    """Counters of one worker slot (a task or a thread)."""

    __slots__ = ("errors", "first_error", "ok")

    def __init__(self) -> None:
        self.ok = 0
        self.errors = 0
        self.first_error: str | None = None

    def fail(self, exc: BaseException) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"[:300]


@dataclass
class Snapshot:
    wall: float
    cpu: float
    ok: int
    extra: float = 0.0
    """The part of ``cpu`` used by processes the client started (EXTRA_CPU)."""
    sys: float = 0.0
    """The part of ``cpu`` spent in the kernel (the client's and EXTRA_SYS)."""

    @classmethod
    def take(cls, tallies: list[Tally]) -> Snapshot:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        extra = sum(measure() for measure in EXTRA_CPU)
        cpu = ru.ru_utime + ru.ru_stime + extra
        sys = ru.ru_stime + sum(measure() for measure in EXTRA_SYS)
        return cls(time.perf_counter(), cpu, sum(t.ok for t in tallies), extra, sys)


@dataclass
class Measurement:
    """What a worker reports for one (scenario, client) pair."""

    requests: int
    wall_s: float
    cpu_s: float
    errors: int
    first_error: str | None
    extra_cpu_s: float = 0.0
    """Of ``cpu_s``, what processes the client started used (the local engine's workers)."""
    sys_cpu_s: float = 0.0
    """Of ``cpu_s``, the kernel's part (system time; the workers' counted in 10 ms ticks)."""

    @classmethod
    def between(cls, a: Snapshot, b: Snapshot, tallies: list[Tally]) -> Measurement:
        first = next((t.first_error for t in tallies if t.first_error), None)
        errors = sum(t.errors for t in tallies)
        return cls(
            b.ok - a.ok,
            b.wall - a.wall,
            b.cpu - a.cpu,
            errors,
            first,
            b.extra - a.extra,
            b.sys - a.sys,
        )


async def measure_async(
    open_fetch: AsyncOpen, target: Target, warmup: float, duration: float
) -> Measurement:
    """`target.concurrency` tasks share one client (how async clients are meant to be used)."""
    async with open_fetch(target) as fetch:
        tallies = [Tally() for _ in range(target.concurrency)]
        running = [True]

        async def slot(tally: Tally) -> None:
            try:
                check_first(target, *(await fetch()))
                tally.ok += 1
            except Exception as exc:
                tally.fail(exc)
            while running[0]:
                try:
                    status, payload = await fetch()
                    check(target, status, payload)
                    tally.ok += 1
                except Exception as exc:
                    tally.fail(exc)
                    await asyncio.sleep(0.001)  # a failing client must not spin the window away

        tasks = [asyncio.create_task(slot(t)) for t in tallies]
        await asyncio.sleep(warmup)
        a = Snapshot.take(tallies)
        await asyncio.sleep(duration)
        b = Snapshot.take(tallies)
        running[0] = False
        _, pending = await asyncio.wait(tasks, timeout=10)
        for task in pending:
            task.cancel()
        return Measurement.between(a, b, tallies)


ThreadLoop = Callable[[Tally, threading.Event], None]


class ReadyLoop:
    """A thread body with slow setup (processes to start): measuring waits for `ready`."""

    def __init__(self, body: Callable[[Tally, threading.Event, threading.Event], None]) -> None:
        self._body = body
        self.ready = threading.Event()

    def __call__(self, tally: Tally, stop: threading.Event) -> None:
        try:
            self._body(tally, stop, self.ready)
        finally:
            self.ready.set()  # a setup failure must not leave the measurement waiting


def sync_loop(open_fetch: SyncOpen, target: Target) -> ThreadLoop:
    """A thread body: its own client/session, one request at a time until `stop`."""

    def run(tally: Tally, stop: threading.Event) -> None:
        with open_fetch(target) as fetch:
            try:
                check_first(target, *fetch())
                tally.ok += 1
            except Exception as exc:
                tally.fail(exc)
            while not stop.is_set():
                try:
                    status, payload = fetch()
                    check(target, status, payload)
                    tally.ok += 1
                except Exception as exc:
                    tally.fail(exc)
                    time.sleep(0.001)

    return run


def measure_threads(loops: list[ThreadLoop], warmup: float, duration: float) -> Measurement:
    """Run each loop on its own thread; the main thread only sleeps and snapshots."""
    tallies = [Tally() for _ in loops]
    stop = threading.Event()

    def guarded(loop: ThreadLoop, tally: Tally) -> None:
        try:
            loop(tally, stop)
        except Exception as exc:  # setup failure of the client itself
            tally.fail(exc)

    threads = [
        threading.Thread(target=guarded, args=(loop, t), daemon=True)
        for loop, t in zip(loops, tallies, strict=True)
    ]
    for t in threads:
        t.start()
    for loop in loops:
        if isinstance(loop, ReadyLoop):
            loop.ready.wait(60)
    time.sleep(warmup)
    a = Snapshot.take(tallies)
    time.sleep(duration)
    b = Snapshot.take(tallies)
    stop.set()
    for t in threads:
        t.join(10)
    return Measurement.between(a, b, tallies)
