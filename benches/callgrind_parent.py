"""Instructions per result in the local engine's parent, counted by callgrind.

The parent feeds every worker, so its cost per result bounds how many workers it can keep
busy, and wall-clock figures on a shared machine move too much to see a 5 % change. This
runs ``LocalEngine.map()`` over URL strings under ``valgrind --tool=callgrind`` with its
workers replaced by stand-ins that answer each job batch at once with the same small
Result a worker sends for nginx's ``/small`` (five header pairs, timings, a 13-byte body),
twice, with ``--base`` and ``--base + --requests`` jobs; the difference divided by
``--requests`` is the parent's cost of one job and its Result. Only the parent is
instrumented (the stand-ins run natively).

    python -m benches.callgrind_parent [--requests 20000] [--base 5000] [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benches.callgrind import instructions

HEADERS = (
    ("Server", "nginx"),
    ("Date", "Fri, 04 Dec 2026 19:27:09 GMT"),
    ("Content-Type", "text/plain"),
    ("Content-Length", "13"),
    ("Connection", "keep-alive"),
)


def stand_in(fd: int) -> None:
    """A worker that runs nothing: every job's Result is the canned one, sent at once."""
    from aioduct.jobs import Result
    from aioduct.local import wire
    from aioduct.local.pairs import PairWriter
    from aioduct.models import Timings

    sock = socket.socket(fileno=fd)
    reader, pairs, out = wire.FrameReader(), PairWriter(), bytearray()
    timings = Timings(connect=0.0011, ttfb=0.00137, total=0.0016)
    while data := sock.recv(1 << 18):
        for kind, payload in reader.feed(data):
            if kind == wire.HELLO:
                wire.append_frame(out, wire.READY, wire.Ready(pid=os.getpid(), runtime="stub"))
            elif kind == wire.JOBS:
                assert isinstance(payload, wire.JobBatch)
                results = [
                    Result(
                        id=job.id,
                        url=job.url,
                        final_url=job.url,
                        status=200,
                        body=b"Hello, World!",
                        http_version="HTTP/1.1",
                        timings=timings,
                        worker=0,
                        reason="OK",
                        size=13,
                    )
                    for job in payload.jobs
                ]
                numbers = [pairs.numbers(HEADERS) for _ in results]
                batch = (payload.seqs, results, [], numbers, *pairs.take())
                wire.append_frame(out, wire.RESULTS, batch)
            elif kind == wire.STOP:
                return
        sock.sendall(out)
        out.clear()


def _child(requests: int, workers: int) -> None:
    from aioduct import LocalEngine

    spawn = subprocess.Popen

    def stand_ins(args: list[str], **options: Any) -> subprocess.Popen[bytes]:
        if "aioduct.local.worker" in args:  # [python, -m, module, FD, PPID, LOOP]
            args = [sys.executable, "-m", "benches.callgrind_parent", "--stand-in", args[3]]
        return spawn(args, **options)

    subprocess.Popen = stand_ins  # type: ignore[assignment,misc]
    urls = [f"http://h{i}.example/small" for i in range(16)]
    with LocalEngine(workers=workers, loop="asyncio", stall_timeout=None, pin=False) as engine:
        count = sum(1 for _ in engine.map(urls[i % 16] for i in range(requests)))
    assert count == requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--base", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--stand-in", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stand_in is not None:
        stand_in(args.stand_in)
        return
    if args.child is not None:
        _child(args.child, args.workers)
        return
    counts = []
    with tempfile.TemporaryDirectory(prefix="aioduct-callgrind-") as tmp:
        for n in (args.base, args.base + args.requests):
            child = ["-m", "benches.callgrind_parent", "--child", str(n)]
            child += ["--workers", str(args.workers)]
            counts.append(instructions(child, Path(tmp) / f"callgrind.{n}.out"))
    per = (counts[1] - counts[0]) / args.requests
    print(f"{per / 1000:8.1f}k instructions per small result in the local engine's parent")


if __name__ == "__main__":
    main()
