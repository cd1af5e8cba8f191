"""Pipeline overhead: the CPU cost of one request through aioduct with no I/O at all.

The runtime is replaced by an in-memory stream that answers every request with a canned
nginx-like response, so what remains is exactly aioduct's own Python work per request:
building the request, pool checkout, encoding, parsing, Response construction, checkin.
Run it before and after a hot-path change:

    .venv/bin/python -m benches.pipeline [--requests 50000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
from typing import Any

import aioduct
import aioduct.engine
from aioduct.runtimes.asyncio import AsyncioRuntime

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 23 Nov 2026 09:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\n"
    b"Hello, World!"
)


class MemoryStream:
    """A Stream whose peer answers each write with ``RESPONSE``."""

    writing_paused = False
    alpn_protocol = None
    ssl_object = None
    peer_address = None

    def __init__(self) -> None:
        self._pending = b""

    def write(self, data: Any) -> None:
        self._pending = RESPONSE

    async def drain(self, deadline: float | None) -> None:
        return None

    async def read(self, deadline: float | None) -> bytes:
        data, self._pending = self._pending, b""
        return data

    def is_reusable(self) -> bool:
        return True

    def close(self) -> None:
        return None


class MemoryRuntime(AsyncioRuntime):
    async def open_tcp(self, ip: str, port: int, **_: Any) -> MemoryStream:  # type: ignore[override]
        return MemoryStream()


async def _run(requests: int, profile: bool) -> float:
    async with aioduct.Client() as client:
        for _ in range(1000):
            await client.get("http://127.0.0.1:9/small")
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        start = time.perf_counter()
        for _ in range(requests):
            await client.get("http://127.0.0.1:9/small")
        elapsed = time.perf_counter() - start
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    return elapsed / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    aioduct.engine.default_runtime = MemoryRuntime  # type: ignore[assignment]
    for name, factory in (("asyncio", asyncio.new_event_loop), ("uvloop", None)):
        if factory is None:
            try:
                import uvloop
            except ImportError:
                continue
            factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            per = runner.run(_run(args.requests, args.profile))
        print(f"{name:8} {per * 1e6:6.2f} µs per GET through the pipeline (no I/O)")


if __name__ == "__main__":
    main()
