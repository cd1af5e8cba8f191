"""Server-Sent Events with reconnection, against a local server that drops the stream.

Run: python examples/sse.py
"""

from __future__ import annotations

import aioduct
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"


def serve(srv: ScriptServer) -> None:
    @srv.route("/ticks")
    async def ticks(conn: Conn, req: ServerRequest) -> None:
        last = int(req.header("last-event-id") or 0)
        if last >= 4:
            await conn.send(b"HTTP/1.1 204 No Content\r\n\r\n")  # 204: stop reconnecting
            return
        body = b"retry: 100\n\n" + b"".join(
            b'id: %d\nevent: tick\ndata: {"n": %d}\n\n' % (n, n) for n in (last + 1, last + 2)
        )
        await conn.send(HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        # The connection then ends: the client reconnects with Last-Event-ID.


async def main(url: str) -> list[int]:
    seen = []
    async with aioduct.Client() as client, client.sse(url) as events:
        async for ev in events:
            print(f"{ev.event} id={ev.id} data={ev.data} (reconnects so far: {events.reconnects})")
            seen.append(ev.json()["n"])
    return seen


if __name__ == "__main__":
    with ScriptServer() as srv:
        serve(srv)
        assert aioduct.run(main(srv.url + "/ticks")) == [1, 2, 3, 4]
        with aioduct.BlockingClient() as client, client.sse(srv.url + "/ticks") as events:
            print("blocking:", [ev.data for ev in events])
