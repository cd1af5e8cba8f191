"""Instructions per job in a local-engine worker process, counted by callgrind.

:mod:`benches.callgrind_jobs` measures the job runner on a loop in one process; this
measures the real thing: ``LocalEngine(workers=1).map()`` over one of nginx's locations
(``--path``: ``/small`` by default, ``/bytes/1m`` for the cost of a large body), with
the worker started under ``valgrind --tool=callgrind`` (through the engine's
``AIODUCT_WORKER_PREFIX``) and the parent running natively. The worker's count covers
everything it does per job: decoding job batches, the job runner and the pipeline, its
event loop, encoding result batches and writing them to the parent. Two runs, with
``--base`` and ``--base + --jobs`` jobs; the difference divided by ``--jobs`` is one
job's cost with start-up and shutdown cancelled out. ``--keep DIR`` keeps the callgrind
output files for ``callgrind_annotate``.

    python -m benches.callgrind_worker [--loops uring,asyncio] [--jobs 3000] [--base 500]
                                       [--concurrency 50] [--path /small] [--keep DIR]
                                       [--option NAME=VALUE ...]

For 1 MB bodies fewer jobs suffice: ``--path /bytes/1m --jobs 300 --base 50
--concurrency 1`` (the download_1m scenario runs one request at a time).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from benches.callgrind import client_options, instructions

LOOPS = ("uring", "asyncio")


def _run(loop: str, jobs: int, concurrency: int, url: str, options: dict[str, Any]) -> None:
    import aioduct.local.engine as local_engine
    from aioduct.jobs import Job

    local_engine._STOP_GRACE = 600.0  # type: ignore[misc]  # an instrumented worker exits slowly
    with local_engine.LocalEngine(
        workers=1, concurrency=concurrency, loop=loop, stall_timeout=None, **options
    ) as engine:
        for result in engine.map(Job(url=url, id=i) for i in range(jobs)):
            if result.status != 200:
                raise RuntimeError(f"job {result.id}: {result.status} {result.error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches.callgrind_worker", description=__doc__)
    parser.add_argument("--loops", default=",".join(LOOPS), metavar="A,B")
    parser.add_argument("--jobs", type=int, default=3000, help="measured jobs")
    parser.add_argument("--base", type=int, default=500, help="jobs of the baseline run")
    parser.add_argument("--concurrency", type=int, default=50, help="the engine's concurrency")
    parser.add_argument("--path", default="/small", help="the nginx location to fetch")
    parser.add_argument("--keep", type=Path, default=None, help="keep callgrind files here")
    parser.add_argument(
        "--option", action="append", default=[], metavar="NAME=VALUE", help="a client option"
    )
    parser.add_argument("--child", nargs=5, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        loop, jobs, concurrency, url, options = args.child
        _run(loop, int(jobs), int(concurrency), url, json.loads(options))
        return 0
    options = {"cookies": False, **client_options(parser, args.option)}
    from aioduct.testing.nginx import Nginx

    if not args.path.startswith("/"):
        parser.error(f"--path is a location such as /small, not {args.path!r}")
    out = args.keep or Path(tempfile.mkdtemp(prefix="aioduct-callgrind-worker-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"{'loop':8} {'instructions/job':>18}")
    child = ["-m", "benches.callgrind_worker", "--child"]
    with Nginx(access_log=False, worker_processes=1) as nginx:
        url = nginx.http_url + args.path
        for loop in [name for name in args.loops.split(",") if name]:
            if loop not in LOOPS:
                parser.error(f"unknown loop {loop!r} (choose from {', '.join(LOOPS)})")
            low, high = (
                instructions(
                    [*child, loop, str(jobs), str(args.concurrency), url, json.dumps(options)],
                    out / f"{loop}.{jobs}",
                    worker=True,
                )
                for jobs in (args.base, args.base + args.jobs)
            )
            print(f"{loop:8} {(high - low) / args.jobs / 1000:17.1f}k", flush=True)
    if args.keep is None:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
