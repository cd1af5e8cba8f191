"""Soak: a million small requests through the local engine, memory read at both ends.

``python -m benches.soak`` runs ``--requests`` GETs of nginx's ``/small`` through one
``LocalEngine.map()`` over a lazy generator of URLs, and reports the parent's and each
worker's resident memory (``VmRSS``) after the warm-up and at the end, every job's fate
(each id must come back exactly once: none lost, none twice) and the errors. It exits 1
when a job is lost or answered twice, any request failed, or a process's RSS at the end
is more than ``--tolerance`` (10 %) above its RSS after the warm-up: a leak per job
shows up as growth with the job count, where steady buffers and caches do not.

It is a bench, not a test: it takes a minute or two (about 30,000 requests/s per worker
here) and measures nothing about time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from aioduct import Job, LocalEngine
from aioduct.local.dispatch import Dispatcher
from aioduct.testing.nginx import Nginx, locations_config


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def origins_per_worker(urls: list[str], workers: int) -> list[str]:
    """One URL per worker, on an origin the engine shards to that worker."""
    shard = Dispatcher(workers, 1).shard
    picked: dict[int, str] = {}
    for url in urls:
        picked.setdefault(shard(Job(url=url)), url)
    return [picked[w] for w in sorted(picked)]


def growth(before: int, after: int) -> float:
    return (after - before) / before if before else 0.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches.soak", description=__doc__)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument(
        "--warmup", type=int, default=50_000, help="requests before the first reading"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64, help="per worker")
    parser.add_argument("--loop", choices=("uring", "asyncio"), default="uring")
    parser.add_argument("--tolerance", type=float, default=0.10, help="allowed RSS growth")
    args = parser.parse_args(argv)
    total, warmup = args.requests, min(args.warmup, args.requests)

    workdir = Path(tempfile.mkdtemp(prefix="aioduct-soak-"))
    mirror = "server_name localhost;\n" + locations_config(workdir / "files", "http://127.0.0.1:9")
    servers = {f"m{i}": mirror for i in range(4 * args.workers)}
    try:
        with Nginx(workdir, access_log=False, worker_processes=1, extra_servers=servers) as nginx:
            candidates = [u + "/small" for u in [nginx.http_url, *nginx.extra_urls.values()]]
            urls = origins_per_worker(candidates, args.workers)
            return soak(urls, total, warmup, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def soak(urls: list[str], total: int, warmup: int, args: argparse.Namespace) -> int:
    seen = bytearray(total)
    twice = errors = done = 0
    first_error = ""
    readings: list[tuple[int, int, list[int]]] = []  # (done, parent KiB, worker KiB)

    def jobs() -> Iterator[str]:
        n = len(urls)
        for i in range(total):
            yield urls[i % n]

    with LocalEngine(workers=args.workers, concurrency=args.concurrency, loop=args.loop) as engine:
        started = time.perf_counter()
        step = max(warmup, total // 10)
        for result in engine.map(jobs()):
            job_id = result.id
            assert isinstance(job_id, int)
            if seen[job_id]:
                twice += 1
            seen[job_id] = 1
            if result.error is not None or result.status != 200:
                errors += 1
                first_error = first_error or f"{result.url}: {result.error or result.status}"
            done += 1
            if done in (warmup, total) or done % step == 0:
                readings.append((done, rss_kib(os.getpid()), [rss_kib(p) for p in engine.pids]))
        elapsed = time.perf_counter() - started
        stats = engine.stats
    lost = total - sum(seen)

    print(
        f"soak  {total:,} GETs of /small through LocalEngine(workers={args.workers}, "
        f"loop={args.loop!r}, concurrency={args.concurrency}) in {elapsed:.1f} s "
        f"({total / elapsed:,.0f} req/s)"
    )
    print(f"{'results':>10}  {'parent RSS':>11}  worker RSS")
    for count, parent, workers in readings:
        print(f"{count:>10,}  {parent:>8,} KiB  " + "  ".join(f"{w:,} KiB" for w in workers))
    _, parent0, workers0 = readings[0]
    _, parent1, workers1 = readings[-1]
    grew = [("parent", growth(parent0, parent1))]
    pairs = zip(workers0, workers1, strict=False)  # a replaced worker has a new pid, same slot
    grew += [(f"worker {i}", growth(a, b)) for i, (a, b) in enumerate(pairs)]
    print("growth after warm-up: " + ", ".join(f"{name} {g:+.1%}" for name, g in grew))
    print(
        f"jobs: {lost} lost, {twice} answered twice, {errors} errors; "
        f"workers replaced: {stats.crashes}"
    )
    if first_error:
        print(f"first error: {first_error}")
    failed = lost or twice or errors or any(g > args.tolerance for _, g in grew)
    print("PASS" if not failed else "FAIL")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
