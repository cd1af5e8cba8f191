"""aioduct's Client on three event loops: asyncio, uvloop and the io_uring UringEventLoop.

Runs GET /small against a local nginx (access log off), sequentially and with 50
concurrent tasks sharing one Client, and prints requests/s and client CPU µs per request
(``getrusage(RUSAGE_SELF)`` of the client process, user + sys). Each loop runs in its own
child process, so one loop's warm caches, imports and garbage do not bill another. On a
machine with two or more CPUs the client is pinned to CPU 0 and nginx to CPU 1, so
"req/s" means one client core.

    .venv/bin/python benches/uring_loop.py [--duration 3] [--loops asyncio,uvloop,uring]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LOOPS = ("asyncio", "uvloop", "uring")
CONCURRENCY = 50


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def _run_for(fetch: Callable[[], Any], tasks: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    count = 0

    async def worker() -> None:
        nonlocal count
        while time.monotonic() < deadline:
            await fetch()
            count += 1

    await asyncio.gather(*(worker() for _ in range(tasks)))
    return count


async def _bench(url: str, duration: float, warmup: float) -> dict[str, dict[str, float]]:
    import aioduct

    out: dict[str, dict[str, float]] = {}
    async with aioduct.Client() as client:
        runtime = client._engine._bind()[0].name

        async def fetch() -> None:
            r = await client.get(url)
            if r.status != 200 or r.content != b"Hello, World!":
                raise RuntimeError(f"unexpected response {r.status} {r.content[:40]!r}")

        for name, tasks in (("sequential", 1), (f"{CONCURRENCY} concurrent", CONCURRENCY)):
            await _run_for(fetch, tasks, warmup)
            cpu0, wall0 = _cpu(), time.perf_counter()
            count = await _run_for(fetch, tasks, duration)
            cpu1, wall1 = _cpu(), time.perf_counter()
            out[name] = {
                "requests": count,
                "rps": count / (wall1 - wall0),
                "cpu_us": (cpu1 - cpu0) / count * 1e6,
            }
    out["runtime"] = {"name": runtime}  # type: ignore[dict-item]
    return out


def _child(kind: str, url: str, duration: float, warmup: float) -> None:
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if kind == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    elif kind == "uring":
        import aioduct.engine
        from aioduct import uring

        uring.require()
        from aioduct.runtimes.uring import UringRuntime
        from aioduct.uring.loop import new_event_loop

        # Until aioduct.runtimes.default_runtime() knows the io_uring loop.
        setattr(aioduct.engine, "default_runtime", UringRuntime)  # noqa: B010
        factory = new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(_bench(url, duration, warmup))
    print(json.dumps(result))


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(0, {cpu})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per scenario")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before measuring")
    parser.add_argument("--loops", default=",".join(LOOPS), help="comma-separated subset")
    parser.add_argument("--no-pin", action="store_true", help="do not pin client and nginx")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        _child(args.child, args.url, args.duration, args.warmup)
        return 0

    from aioduct import uring
    from aioduct.testing.nginx import Nginx

    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    original = os.sched_getaffinity(0) if pin else None
    if pin:
        _pin(1)  # nginx inherits CPU 1
    with Nginx(access_log=False) as nginx:
        if original is not None:
            os.sched_setaffinity(0, original)
        url = nginx.http_url + "/small"
        print(f"nginx {url}; client pinned to CPU 0: {pin}; {args.duration:g} s per scenario")
        rows: list[tuple[str, str, float, float]] = []
        for kind in args.loops.split(","):
            if kind == "uring" and not uring.is_available():
                print(f"{kind}: skipped: {uring.unavailable_reason()}")
                continue
            cmd = [sys.executable, __file__, "--child", kind, "--url", url]
            cmd += ["--duration", str(args.duration), "--warmup", str(args.warmup)]
            preexec = (lambda: _pin(0)) if pin else None
            done = subprocess.run(
                cmd, capture_output=True, text=True, preexec_fn=preexec, check=False
            )
            if done.returncode != 0:
                print(f"{kind}: failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            runtime = result.pop("runtime")["name"]
            for scenario, m in result.items():
                rows.append((f"{kind} ({runtime})", scenario, m["rps"], m["cpu_us"]))
        print(f"\n{'loop (runtime)':<20} {'scenario':<16} {'req/s':>9} {'CPU µs/req':>11}")
        for loop_name, scenario, rps, cpu in rows:
            print(f"{loop_name:<20} {scenario:<16} {rps:>9,.0f} {cpu:>11.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
