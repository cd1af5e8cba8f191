"""``aioduct demo``: crawl an embedded loopback site with both engines and compare them.

The origin runs in a child process listening on ``--origins`` ports, each port a distinct
origin (a virtual host): the local engine shards jobs by origin, so many origins are what
let it spread a crawl over its workers. The same ``--urls`` pages are crawled first with
the send engine (this process, one event loop), then with the local engine (a pinned
worker process per usable CPU, on io_uring; where io_uring is unusable the workers run
on asyncio/uvloop instead and the demo says why). Every body is checked against the
origin's deterministic page, and a table compares requests/s, CPU per request (this
process plus the workers, start-up excluded), latency and errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ..jobs import Job, Result
from ..runner import SendEngine
from ..testing.origin import OriginProcess, page_body
from ._progress import StatusLine, human_bytes

ENGINES: Final = ("send", "local")
_TICK: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def add_parser(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "demo", help="crawl an embedded loopback site with both engines and compare"
    )
    parser.add_argument("--urls", type=int, default=20000, help="pages to fetch (20000)")
    parser.add_argument("--origins", type=int, default=32, help="origins (ports) to spread over")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="requests in flight per event loop: the send engine's, each worker's (64)",
    )
    parser.add_argument("--workers", type=int, default=None, help="local engine workers (CPUs)")
    parser.add_argument(
        "--engines", default="send,local", help="which engines to run, in order (send,local)"
    )
    parser.add_argument("--no-uvloop", action="store_true", help="stock asyncio in this process")
    parser.set_defaults(run=_run)
    return parser


@dataclass
class Run:
    """What one engine did with the crawl."""

    engine: str
    workers: int
    loop: str
    done: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    elapsed: float = 0.0
    startup: float = 0.0
    cpu: float = 0.0
    origin_cpu: float = 0.0
    """CPU seconds the origin server used meanwhile (when it is the limit, it shows here)."""
    latencies: list[float] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _urls(bases: list[str], count: int) -> Iterator[Job]:
    """``/page/i`` spread round-robin over the origins, lazily."""
    for i in range(count):
        yield Job(url=f"{bases[i % len(bases)]}/page/{i}", id=i)


def _problem(result: Result) -> str | None:
    """Why ``result`` is not the page the origin serves at its URL, or None."""
    if result.error is not None:
        return result.error.kind
    path = "/" + result.url.split("/", 3)[3]
    status, _, body = page_body(path)
    if result.status != status:
        return f"status {result.status}"
    if result.body != body:
        return "wrong body"
    return None


def _cpu_seconds(pids: list[int], *, me: bool = True) -> float:
    """CPU time of this process (unless ``me=False``) plus the given live processes."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime if me else 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


async def _crawl(engine: Any, run: Run, origin: OriginProcess, count: int, status: bool) -> None:
    bases, server = origin.urls, [origin.proc.pid]
    started = time.perf_counter()
    line = StatusLine(
        lambda: (
            f"  {run.engine:<5} {run.done:>7,}/{count:,}  "
            f"{run.done / max(time.perf_counter() - t0, 1e-9):>8,.0f} req/s  "
            f"errors {run.error_count}  {human_bytes(run.bytes)}"
        ),
        enabled=status,
    )
    async with engine:
        pids: list[int] = list(getattr(engine, "pids", []))
        runtimes = getattr(engine, "runtimes", None)
        if runtimes:
            run.loop = ",".join(sorted(set(runtimes)))
        run.startup = time.perf_counter() - started
        cpu0 = _cpu_seconds(pids)
        server0 = _cpu_seconds(server, me=False)
        t0 = time.perf_counter()
        line.start()
        try:
            async for result in engine.amap(_urls(bases, count)):
                run.done += 1
                run.bytes += result.size
                problem = _problem(result)
                if problem is not None:
                    run.errors[problem] = run.errors.get(problem, 0) + 1
                if result.timings is not None:
                    run.latencies.append(result.timings.total)
        finally:
            line.stop()
        run.elapsed = time.perf_counter() - t0
        run.cpu = _cpu_seconds(pids) - cpu0
        run.origin_cpu = _cpu_seconds(server, me=False) - server0


def _engine(kind: str, args: argparse.Namespace) -> tuple[Any, Run]:
    if kind == "send":
        loop = "asyncio" if args.no_uvloop else "uvloop"
        return SendEngine(concurrency=args.concurrency), Run("send", 1, loop)
    from .. import uring
    from ..local.engine import LocalEngine, usable_cpus

    reason = uring.unavailable_reason()
    loop = "uring"
    if reason is not None:
        loop = "asyncio"
        print(f"  note: io_uring is unusable here ({reason.rstrip('.')}); the local engine's")
        print("        workers run on asyncio (uvloop) instead")
    workers = args.workers or len(usable_cpus())
    engine = LocalEngine(workers=workers, loop=loop, concurrency=args.concurrency)
    return engine, Run("local", workers, loop)


def _table(runs: list[Run]) -> list[str]:
    base = runs[0].rate if runs else 0.0
    head = (
        f"  {'engine':<7}{'workers':>8}  {'loop':<8}{'req/s':>9}{'× ' + runs[0].engine:>9}"
        f"{'CPU µs/req':>12}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
    )
    rows = [head, "  " + "-" * (len(head) - 2)]
    for run in runs:
        p50, p99 = run.percentile(0.5), run.percentile(0.99)
        ms = [f"{v * 1e3:>9.2f}" if v is not None else f"{'-':>9}" for v in (p50, p99)]
        rows.append(
            f"  {run.engine:<7}{run.workers:>8}  {run.loop:<8}{run.rate:>9,.0f}"
            f"{run.rate / base if base else 0:>8.2f}x"
            f"{run.cpu * 1e6 / max(run.done, 1):>12,.1f}{ms[0]}{ms[1]}{run.error_count:>8}"
        )
    return rows


def _run(args: argparse.Namespace) -> int:
    kinds = [k.strip() for k in args.engines.split(",") if k.strip()]
    bad = [k for k in kinds if k not in ENGINES]
    if bad or not kinds:
        print(f"aioduct demo: error: --engines takes send and/or local, not {args.engines!r}")
        return 1
    if args.urls < 1 or args.origins < 1 or args.concurrency < 1:
        print("aioduct demo: error: --urls, --origins and --concurrency must be at least 1")
        return 1
    status = sys.stderr.isatty()
    runs: list[Run] = []
    with OriginProcess(ports=args.origins) as origin:
        print(
            f"aioduct demo: {args.urls:,} pages over {len(origin.urls)} loopback origins "
            f"(one server process, pid {origin.proc.pid}), every body verified"
        )
        for kind in kinds:
            engine, run = _engine(kind, args)
            coro = _crawl(engine, run, origin, args.urls, status)
            if args.no_uvloop:
                asyncio.run(coro)
            else:
                from ..client import run as run_loop

                run_loop(coro)
            runs.append(run)
    print()
    for row in _table(runs):
        print(row)
    print()
    for run in runs:
        extra = f", start-up {run.startup:.2f} s" if run.engine == "local" else ""
        extra += f"; the origin server was busy {run.origin_cpu / run.elapsed:.2f} CPUs"
        errors = f"; errors: {run.errors}" if run.errors else ""
        print(
            f"  {run.engine}: {run.done:,} pages in {run.elapsed:.2f} s, "
            f"{human_bytes(run.bytes)} of verified bodies{extra}{errors}"
        )
    print(
        "  CPU: this process + the local engine's workers, start-up excluded; latency: "
        "request start to response head.\n  The origin server shares the machine's "
        f"{os.cpu_count()} CPUs with the client."
    )
    ok = all(run.error_count == 0 and run.done == args.urls for run in runs)
    return 0 if ok else 1
