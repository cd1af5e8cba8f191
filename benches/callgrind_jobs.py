"""Instructions per job through the job runner, on each event loop a worker may run.

A local-engine worker turns Jobs into Results with :class:`aioduct.runner.JobRunner` on
its event loop; so does :class:`aioduct.SendEngine` in-process. This measures that path
deterministically: ``JobRunner.run`` on ``--lanes`` concurrent tasks against nginx's
``/small`` on loopback, in one process under ``valgrind --tool=callgrind``, twice (with
``--base`` and ``--base + --jobs`` jobs) so start-up and warm-up cancel out. No worker
process and no wire: the figure is the pipeline's and the loop's cost per job, the part
of the local engine's per-request CPU that a worker pays.

    python -m benches.callgrind_jobs [--loops uvloop,asyncio,uring] [--jobs 1000]
                                     [--base 100] [--lanes 50] [--option NAME=VALUE ...]

``--option cookies=false --option decompress=false`` measures a client with those
ClientConfig options (values are JSON: false, true, numbers, "strings").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from benches.callgrind import client_options, instructions

LOOPS = ("uvloop", "asyncio", "uring")


def _child(loop: str, jobs: int, lanes: int, url: str, options: dict[str, object]) -> None:
    from aioduct.client import Client
    from aioduct.jobs import Job
    from aioduct.runner import JobRunner, RunnerSettings, bulk_config

    async def main() -> None:
        client = Client(config=bulk_config(None, dict(options), lanes))
        runner = JobRunner(client, RunnerSettings(concurrency=lanes))
        pending = iter([Job(url=url, id=i) for i in range(200 + jobs)])

        async def lane() -> None:
            for job in pending:
                result = await runner.run(job)
                if result.status != 200:
                    raise RuntimeError(f"{result.status} {result.error}")

        await asyncio.gather(*(lane() for _ in range(lanes)))
        await client.aclose()

    if loop == "uring":
        from aioduct.uring.loop import new_event_loop as factory
    elif loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches.callgrind_jobs", description=__doc__)
    parser.add_argument("--loops", default=",".join(LOOPS), metavar="A,B")
    parser.add_argument("--jobs", type=int, default=1000, help="measured jobs")
    parser.add_argument("--base", type=int, default=100, help="jobs of the baseline run")
    parser.add_argument("--lanes", type=int, default=50, help="jobs in flight")
    parser.add_argument(
        "--option", action="append", default=[], metavar="NAME=VALUE", help="a client option"
    )
    parser.add_argument("--child", nargs=5, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        loop, jobs, lanes, url, options = args.child
        _child(loop, int(jobs), int(lanes), url, json.loads(options))
        return 0
    options = client_options(parser, args.option)
    from aioduct.testing.nginx import Nginx

    out = Path(tempfile.mkdtemp(prefix="aioduct-callgrind-jobs-"))
    print(f"{'loop':8} {'instructions/job':>18}")
    with Nginx(access_log=False, worker_processes=1) as nginx:
        url = nginx.http_url + "/small"
        for loop in [name for name in args.loops.split(",") if name]:
            if loop not in LOOPS:
                parser.error(f"unknown loop {loop!r} (choose from {', '.join(LOOPS)})")
            counts = []
            for jobs in (args.base, args.base + args.jobs):
                child = ["-m", "benches.callgrind_jobs", "--child", loop, str(jobs)]
                child += [str(args.lanes), url, json.dumps(options)]
                counts.append(instructions(child, out / f"{loop}.{jobs}"))
            print(f"{loop:8} {(counts[1] - counts[0]) / args.jobs / 1000:17.1f}k", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
