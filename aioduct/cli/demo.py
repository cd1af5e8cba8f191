"""``aioduct demo``: crawl an embedded loopback origin and print what it took.

The origin runs in a child process (so it uses the other core and its CPU is not counted
as the client's). The client crawls ``--urls`` distinct pages with ``--concurrency``
requests in flight, verifies every body, shows a progress line on a terminal, and ends
with a summary: requests/s, client CPU per request, latency percentiles, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time
from typing import Any

from ..client import Client, run
from ..errors import AioductError
from ..testing.origin import page_body


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("demo", help="crawl an embedded loopback origin")
    parser.add_argument("--urls", type=int, default=5000, help="pages to fetch (default 5000)")
    parser.add_argument("--concurrency", type=int, default=50, help="requests in flight")
    parser.add_argument("--no-uvloop", action="store_true", help="use the stock asyncio loop")
    parser.set_defaults(run=_run)


class _Origin:
    """The origin server as a child process, stopped by closing its stdin."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aioduct.testing.origin", "--port", "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"the demo origin failed to start (said {line!r})")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def _crawl(base: str, count: int, concurrency: int, progress: bool) -> dict[str, Any]:
    paths = [f"/page/{i}" for i in range(count)]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    done = 0
    received = 0
    next_index = 0
    started = time.perf_counter()

    async with Client(max_connections=concurrency, pool_max_idle_per_host=concurrency) as client:

        async def worker() -> None:
            nonlocal done, received, next_index
            while next_index < count:
                path = paths[next_index]
                next_index += 1
                t0 = time.perf_counter()
                try:
                    response = await client.get(base + path)
                    if response.content != page_body(path)[2]:
                        raise AioductError(f"wrong body for {path}")
                    received += len(response.content)
                except AioductError as exc:
                    kind = type(exc).__name__
                    errors[kind] = errors.get(kind, 0) + 1
                latencies.append(time.perf_counter() - t0)
                done += 1

        async def report() -> None:
            while True:
                await asyncio.sleep(0.25)
                elapsed = time.perf_counter() - started
                rate = done / elapsed if elapsed else 0.0
                sys.stderr.write(
                    f"\r  {done:>7}/{count} done  {rate:>8,.0f} req/s  "
                    f"errors {sum(errors.values())}  {received / 1e6:,.1f} MB"
                )
                sys.stderr.flush()

        reporter = asyncio.create_task(report()) if progress else None
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        if reporter is not None:
            reporter.cancel()
            sys.stderr.write("\n")
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "done": done,
        "elapsed": elapsed,
        "errors": errors,
        "bytes": received,
        "p50": latencies[len(latencies) // 2] if latencies else 0.0,
        "p99": latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
    }


def _run(args: argparse.Namespace) -> int:
    origin = _Origin()
    try:
        loop_name = "asyncio" if args.no_uvloop else "uvloop"
        print(
            f"aioduct demo: crawling {args.urls} pages of {origin.url} "
            f"({args.concurrency} in flight, send engine on {loop_name})"
        )
        progress = sys.stderr.isatty()
        usage_before = resource.getrusage(resource.RUSAGE_SELF)
        coro = _crawl(origin.url, args.urls, args.concurrency, progress)
        stats = asyncio.run(coro) if args.no_uvloop else run(coro)
        usage_after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        origin.stop()
    cpu = (usage_after.ru_utime - usage_before.ru_utime) + (
        usage_after.ru_stime - usage_before.ru_stime
    )
    done = stats["done"]
    errors = sum(stats["errors"].values())
    print(
        f"  requests      {done:,} in {stats['elapsed']:.2f} s "
        f"= {done / stats['elapsed']:,.0f} req/s"
    )
    print(f"  client CPU    {cpu * 1e6 / max(done, 1):,.1f} µs per request (pid {os.getpid()})")
    print(f"  latency       p50 {stats['p50'] * 1e3:.2f} ms, p99 {stats['p99'] * 1e3:.2f} ms")
    print(f"  received      {stats['bytes'] / 1e6:,.2f} MB of verified bodies")
    print(f"  errors        {errors}" + (f" {stats['errors']}" if errors else ""))
    return 0 if errors == 0 and done == args.urls else 1
