"""Proxies scripted on the project's ScriptServer: recording, relaying, and hostile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from aioduct.testing.server import Conn, ScriptServer


async def read_head(conn: Conn) -> bytes:
    """The bytes up to and including the first blank line (a request head)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await conn.recv(1)
        if not chunk:
            return data
        data += chunk
    return data


def head_fields(head: bytes) -> dict[str, str]:
    out = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            out[name.strip().lower()] = value.strip()
    return out


async def relay(conn: Conn, host: str, port: int) -> None:
    """Pipe the client connection to ``host:port`` both ways until either side ends."""
    reader, writer = await asyncio.open_connection(host, port)

    async def up() -> None:
        while data := await conn.recv():
            writer.write(data)
            await writer.drain()
        writer.close()

    async def down() -> None:
        while data := await reader.read(65536):
            await conn.send(data)
        conn.close()

    await asyncio.gather(up(), down(), return_exceptions=True)
    with contextlib.suppress(Exception):
        writer.close()


def connect_proxy(
    srv: ScriptServer,
    heads: list[bytes],
    answer: Callable[[Conn, bytes], Awaitable[bool]] | None = None,
) -> None:
    """Make ``srv`` a CONNECT proxy that records each CONNECT head in ``heads``.

    ``answer(conn, head)`` may answer instead (returning ``True`` once it did);
    otherwise the proxy says 200 and relays to the requested target.
    """

    @srv.on_connect
    async def hook(conn: Conn) -> None:
        head = await read_head(conn)
        heads.append(head)
        if answer is not None and await answer(conn, head):
            conn.close()
            return
        target = head.split(b" ")[1].decode()
        host, _, port = target.rpartition(":")
        await conn.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await relay(conn, host.strip("[]"), int(port))
