"""A small, fast loopback origin for the demo and crawl tests.

It serves a synthetic site: ``/page/N`` returns a deterministic HTML page linking to a few
other pages, ``/data/N.json`` a JSON document; any path under ``/status/CODE`` answers with
that status. Requests are keep-alive HTTP/1.1 without bodies, parsed just enough to route
them — the point is to give a client something quick and predictable to crawl, not to be a
general server (:mod:`aioduct.testing.server` is the scriptable one for hostile cases).

Run standalone: ``python -m aioduct.testing.origin --port 0`` prints ``PORT <n>`` and
serves until stdin closes or it is terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import zlib
from typing import Final

__all__ = ["OriginProtocol", "page_body", "serve"]

_MAX_HEAD: Final = 16 * 1024


def page_body(path: str) -> tuple[int, bytes, bytes]:
    """``(status, content_type, body)`` for ``path`` — deterministic, so tests can check it."""
    if path.startswith("/page/"):
        n = zlib.crc32(path.encode())
        links = "".join(f'<a href="/page/{(n + i) % 100000}">next {i}</a>' for i in range(3))
        body = f"<html><title>{path}</title><body>{links}<p>{'x' * (n % 512)}</p></body></html>"
        return 200, b"text/html; charset=utf-8", body.encode()
    if path.startswith("/data/"):
        n = zlib.crc32(path.encode())
        return 200, b"application/json", f'{{"path":"{path}","n":{n}}}'.encode()
    if path.startswith("/status/") and path[8:11].isdigit():
        return int(path[8:11]), b"text/plain", b"status\n"
    if path == "/":
        return 200, b"text/plain", b"aioduct demo origin\n"
    return 404, b"text/plain", b"not found\n"


_REASONS: Final = {200: b"OK", 404: b"Not Found", 500: b"Internal Server Error"}


class OriginProtocol(asyncio.Protocol):
    """One keep-alive connection: split requests on blank lines, answer each in order."""

    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        transport = self._transport
        assert transport is not None
        out = []
        close = False
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end]
            buffer = buffer[end + 4 :]
            line_end = head.find(b"\r\n")
            request_line = head if line_end < 0 else head[:line_end]
            parts = request_line.split(b" ")
            if len(parts) != 3:
                out.append(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                close = True
                break
            method, target = parts[0], parts[1].decode("latin-1")
            path = target.split("?", 1)[0]
            status, ctype, body = page_body(path)
            if b"\r\nconnection: close" in head.lower():
                close = True
            reason = _REASONS.get(status, b"Status")
            out.append(
                b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
                % (status, reason, ctype, len(body), b"Connection: close\r\n" if close else b"")
            )
            if method != b"HEAD":
                out.append(body)
            if close:
                break
        if len(buffer) > _MAX_HEAD:
            close = True
        self._buffer = buffer
        if out:
            transport.write(b"".join(out))
        if close:
            transport.close()


async def serve(host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(OriginProtocol, host, port, backlog=4096)


async def _main(port: int) -> None:
    server = await serve(port=port)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.create_future()

    def watch_stdin() -> None:
        with contextlib.suppress(Exception):
            sys.stdin.buffer.read()

        def finish() -> None:
            if not stdin_closed.done():
                stdin_closed.set_result(None)

        loop.call_soon_threadsafe(finish)

    loop.run_in_executor(None, watch_stdin)
    async with server:
        await stdin_closed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    from ..client import run

    with contextlib.suppress(KeyboardInterrupt):
        run(_main(args.port))


if __name__ == "__main__":
    main()
