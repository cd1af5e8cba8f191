"""A small, fast loopback origin for the demo and crawl tests.

It serves a synthetic site: ``/page/N`` returns a deterministic HTML page linking to a few
other pages, ``/data/N.json`` a JSON document; any path under ``/status/CODE`` answers with
that status. Requests are keep-alive HTTP/1.1 without bodies, parsed just enough to route
them — the point is to give a client something quick and predictable to crawl, not to be a
general server (:mod:`aioduct.testing.server` is the scriptable one for hostile cases).

Run standalone: ``python -m aioduct.testing.origin --port 0`` prints ``PORT <n>`` and
serves until stdin closes or it is terminated. ``--ports 32`` listens on 32 kernel-picked
ports at once and prints ``PORTS <n1> <n2> ...``: each port is a distinct origin
(``scheme://host:port``), which is what a crawl sharded by origin needs to spread its
work over many workers — the demo uses it as 32 virtual hosts served by one process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import zlib
from types import TracebackType
from typing import Final

__all__ = [
    "OriginProcess",
    "OriginProtocol",
    "bound_port",
    "page_body",
    "serve",
    "serve_many",
]

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


async def serve_many(count: int, host: str = "127.0.0.1") -> list[asyncio.Server]:
    """``count`` servers on kernel-picked ports of ``host``: one origin per port."""
    if count < 1:
        raise ValueError(f"count must be >= 1 port, not {count}")
    servers: list[asyncio.Server] = []
    try:
        while len(servers) < count:
            servers.append(await serve(host, 0))
    except BaseException:
        for server in servers:
            server.close()
        raise
    return servers


def bound_port(server: asyncio.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


async def _main(port: int, count: int | None) -> None:
    if count is None:
        servers = [await serve(port=port)]
        print(f"PORT {bound_port(servers[0])}", flush=True)
    else:
        servers = await serve_many(count)
        print("PORTS " + " ".join(str(bound_port(s)) for s in servers), flush=True)
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
    try:
        await stdin_closed
    finally:
        for server in servers:
            server.close()


class OriginProcess:
    """The origin in a child process (its CPU is not the caller's), stopped by closing stdin.

    ``with OriginProcess(ports=32) as origin: origin.urls`` -- one base URL per port.
    """

    def __init__(self, ports: int = 1) -> None:
        argv = [sys.executable, "-m", "aioduct.testing.origin"]
        argv += ["--ports", str(ports)] if ports != 1 else ["--port", "0"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        words = line.split()
        if not words or words[0] not in ("PORT", "PORTS") or not words[1:]:
            self.stop()
            raise RuntimeError(f"the origin server failed to start (it said {line!r})")
        self.ports = [int(w) for w in words[1:]]
        self.urls = [f"http://127.0.0.1:{port}" for port in self.ports]

    @property
    def url(self) -> str:
        return self.urls[0]

    def stop(self) -> None:
        if self.proc.stdin:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> OriginProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="one port (0: the kernel picks)")
    parser.add_argument(
        "--ports", type=int, default=None, metavar="N", help="N kernel-picked ports (N origins)"
    )
    args = parser.parse_args(argv)
    if args.ports is not None and args.ports < 1:
        parser.error(f"--ports must be at least 1, not {args.ports}")
    from ..client import run

    with contextlib.suppress(KeyboardInterrupt):
        run(_main(args.port, args.ports))


if __name__ == "__main__":
    main()
