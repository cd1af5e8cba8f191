"""Instructions per request through the in-memory pipeline, counted by callgrind.

Wall-clock micro-benchmarks on a shared machine move by 10-50 % between runs; valgrind's
instruction counts move by well under 1 %. This runs ``benches.pipeline``'s in-memory
client under ``valgrind --tool=callgrind`` twice, with ``--base`` and ``--base +
--requests`` requests after the same warm-up, and divides the difference by
``--requests``: start-up, imports and warm-up cancel out.

    python -m benches.callgrind_pipeline [--http2] [--loop uvloop|asyncio]
                                         [--requests 2000] [--base 200]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from benches.callgrind import instructions


async def _drive(requests: int, http2: bool) -> None:
    import aioduct

    async with aioduct.Client(http2_prior_knowledge=http2) as client:
        for _ in range(200 + requests):
            await client.get("http://127.0.0.1:9/small")


def _child(requests: int, http2: bool, loop: str) -> None:
    import aioduct.engine
    from benches.pipeline import MemoryRuntime

    MemoryRuntime.http2 = http2
    aioduct.engine.default_runtime = MemoryRuntime  # type: ignore[assignment]
    factory = asyncio.new_event_loop
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_drive(requests, http2))


def _instructions(requests: int, http2: bool, loop: str, out_dir: Path) -> int:
    args = ["-m", "benches.callgrind_pipeline", "--child", str(requests), "--loop", loop]
    args += ["--http2"] if http2 else []
    return instructions(args, out_dir / f"callgrind.{requests}.out")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http2", action="store_true", help="h2c instead of HTTP/1.1")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--base", type=int, default=200)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        _child(args.child, args.http2, args.loop)
        return
    with tempfile.TemporaryDirectory(prefix="aioduct-callgrind-") as tmp:
        low = _instructions(args.base, args.http2, args.loop, Path(tmp))
        high = _instructions(args.base + args.requests, args.http2, args.loop, Path(tmp))
    what = "h2c GET" if args.http2 else "GET"
    per = (high - low) / args.requests
    print(f"{args.loop:8} {per / 1000:8.1f}k instructions per {what} through the pipeline")


if __name__ == "__main__":
    main()
