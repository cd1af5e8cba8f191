"""Pipeline overhead: the CPU cost of one request through aioduct with no I/O at all.

The runtime is replaced by an in-memory stream that answers every request with a canned
nginx-like response, so what remains is exactly aioduct's own Python work per request:
building the request, pool checkout, encoding, parsing, Response construction, checkin.
Run it before and after a hot-path change:

    .venv/bin/python -m benches.pipeline [--requests 50000] [--profile] [--http2]
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

    read_head = read

    def is_reusable(self) -> bool:
        return True

    def close(self) -> None:
        return None


#: What nginx sends for GET /small over h2c (HEADERS with an HPACK table-size update to 0,
#: as nginx's first response has, then DATA); stream ids are patched per request.
H2_RESPONSE = bytes.fromhex(
    "00002d01040000000120887684aa6355e76196d07abe94132a693f75040138a045702e5c1054c5a37f5f87"
    "497ca58ae819aa5c02313300000d00010000000148656c6c6f2c20576f726c6421"
)
#: An empty server SETTINGS frame and the ACK of the client's.
H2_PREFACE = bytes.fromhex("000000040000000000000000040100000000")
_H2_CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class MemoryH2Stream(MemoryStream):
    """An h2c peer: SETTINGS first, then the canned response to every HEADERS frame."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None

    def write(self, data: Any) -> None:
        view = bytes(data)
        if view.startswith(_H2_CLIENT_PREFACE):
            view = view[len(_H2_CLIENT_PREFACE) :]
            self._chunks.append(H2_PREFACE)
        offset = 0
        while offset + 9 <= len(view):
            length = int.from_bytes(view[offset : offset + 3], "big")
            if view[offset + 3] == 0x1:  # HEADERS: answer on that stream
                sid = view[offset + 5 : offset + 9]
                self._chunks.append(
                    H2_RESPONSE[:5] + sid + H2_RESPONSE[9:59] + sid + H2_RESPONSE[63:]
                )
            offset += 9 + length
        if self._chunks and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self, deadline: float | None) -> bytes:
        while not self._chunks:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


class MemoryRuntime(AsyncioRuntime):
    http2 = False

    async def open_tcp(self, ip: str, port: int, **_: Any) -> MemoryStream:  # type: ignore[override]
        return MemoryH2Stream() if self.http2 else MemoryStream()


async def _run(requests: int, profile: bool, http2: bool = False) -> float:
    async with aioduct.Client(http2_prior_knowledge=http2) as client:
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
    parser.add_argument("--http2", action="store_true", help="h2c instead of HTTP/1.1")
    args = parser.parse_args()
    MemoryRuntime.http2 = args.http2
    aioduct.engine.default_runtime = MemoryRuntime  # type: ignore[assignment]
    for name, factory in (("asyncio", asyncio.new_event_loop), ("uvloop", None)):
        if factory is None:
            try:
                import uvloop
            except ImportError:
                continue
            factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            per = runner.run(_run(args.requests, args.profile, args.http2))
        what = "h2c GET" if args.http2 else "GET"
        print(f"{name:8} {per * 1e6:6.2f} µs per {what} through the pipeline (no I/O)")


if __name__ == "__main__":
    main()
