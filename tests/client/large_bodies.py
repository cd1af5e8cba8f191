"""Scripted servers of 1 MiB bodies that stall, trickle, stop short or arrive intact:
what the direct-receive tests of every runtime read large bodies from.

``serve(srv)`` adds, on a :class:`ScriptServer`:

- ``/stall``: 200 kB of a 1 MiB body, then 1 s of nothing, then the rest as 0xAA bytes
  (which must never show up in another body);
- ``/steady``: the body in 25 pieces 0.04 s apart (1 s in all, never 0.3 s silent);
- ``/cut``: half the body, then the connection closes;
- ``/body?N``: intact body N (0-3), sent in pieces 0.05 s apart, so that it is received
  while a stalled one would resume;

and returns the bodies by key.
"""

from __future__ import annotations

import random

from aioduct.testing.server import Conn, ScriptServer, ServerRequest

SIZE = 1 << 20


def head(length: int) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def serve(srv: ScriptServer) -> dict[str, bytes]:
    bodies = {str(i): payload(SIZE, i) for i in range(4)}

    @srv.route("/stall")
    async def stall(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(SIZE) + b"x" * 200_000)
        await conn.sleep(1.0)
        await conn.send(b"\xaa" * (SIZE - 200_000))

    @srv.route("/steady")
    async def steady(conn: Conn, req: ServerRequest) -> None:
        data = bodies["0"]
        step = SIZE // 25 + 1
        await conn.send(head(SIZE))
        for i in range(0, SIZE, step):
            await conn.sleep(0.04)
            await conn.send(data[i : i + step])

    @srv.route("/cut")
    async def cut(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(SIZE) + bodies["0"][: SIZE // 2])
        conn.close()

    @srv.route("/body")
    async def body(conn: Conn, req: ServerRequest) -> None:
        data = bodies[req.query]
        await conn.send(head(SIZE) + data[:1000])
        for i in range(1000, SIZE, 200_000):
            await conn.sleep(0.05)
            await conn.send(data[i : i + 200_000])

    return bodies
