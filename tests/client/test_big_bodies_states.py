"""Adversarial states around large bodies received into one buffer: cancellation and
timeouts mid-body (no later body may be written by the abandoned receive), heads split
at odd places, the head read taking only part of a large buffered response, bodies
ending around the receive buffer's tail, bodiless responses announcing a length."""

from __future__ import annotations

import asyncio
import time

import pytest

import aioduct
from aioduct.bodybuffers import DIRECT_MIN
from aioduct.testing.server import Conn, PeerClosed, ScriptServer, ServerRequest

from .test_big_bodies import LOOPS, OK, head, payload, run

TAIL = 16 * 1024  # the part of a body received through the stream buffer


@pytest.fixture
def srv(script_server: ScriptServer) -> ScriptServer:
    script_server.route_raw("/good", OK)
    return script_server


def open_connections(client: aioduct.Client) -> int:
    pool = client._engine.pool  # type: ignore[union-attr]
    assert pool is not None
    return pool.open_connections


def serve_slow_and_fast(srv: ScriptServer, bodies: list[bytes]) -> None:
    @srv.route("/slow")
    async def slow(conn: Conn, req: ServerRequest) -> None:
        # Part of the body, then -- after the client gave up -- the rest, which must
        # land nowhere the client still uses.
        body = bodies[int(req.query)]
        await conn.send(head(len(body)) + body[:100_000])
        await conn.sleep(0.3)
        try:
            for i in range(100_000, len(body), 50_000):
                await conn.send(body[i : i + 50_000])
        except (PeerClosed, OSError):
            pass

    @srv.route("/fast")
    async def fast(conn: Conn, req: ServerRequest) -> None:
        body = bodies[int(req.query)]
        await conn.send(head(len(body)) + body[:1000])
        await conn.sleep(0.02)
        await conn.send(body[1000:])


@pytest.mark.parametrize("loop", LOOPS)
def test_cancelled_mid_body_writes_into_no_later_body(srv: ScriptServer, loop: str) -> None:
    size = 1 << 20  # small enough for the freed buffer to be kept and handed out again
    bodies = [payload(size, i) for i in range(6)]
    serve_slow_and_fast(srv, bodies)

    async def main() -> None:
        async with aioduct.Client() as client:
            for i in range(0, 6, 2):
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(client.get(f"{srv.url}/slow?{i}"), 0.1)
                assert open_connections(client) == 0, "a cancelled body's connection was kept"
                r = await client.get(f"{srv.url}/fast?{i + 1}")
                await asyncio.sleep(0.4)  # the abandoned response's rest arrives meanwhile
                assert r.content == bodies[i + 1]
                r2 = await client.get(f"{srv.url}/fast?{i + 1}")
                assert r2.content == bodies[i + 1]

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_read_timeout_mid_body_writes_into_no_later_body(srv: ScriptServer, loop: str) -> None:
    size = 1 << 20
    bodies = [payload(size, i) for i in range(4)]
    serve_slow_and_fast(srv, bodies)

    async def main() -> None:
        async with aioduct.Client(read_timeout=0.1) as client:
            with pytest.raises(aioduct.ReadTimeout):
                await client.get(f"{srv.url}/slow?0")
            assert open_connections(client) == 0
            r = await client.get(f"{srv.url}/fast?1", timeout=aioduct.Timeout(read=5))
            await asyncio.sleep(0.4)
            assert r.content == bodies[1]

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_heads_split_anywhere_and_bodies_around_the_tail(srv: ScriptServer, loop: str) -> None:
    """Every body on one kept-alive connection, each intact, the next one too."""
    sizes = [
        DIRECT_MIN,
        DIRECT_MIN + TAIL,
        DIRECT_MIN + TAIL + 1,
        200_000,
        (1 << 20) - 1,
    ]
    bodies = {size: payload(size, size) for size in sizes}

    @srv.route("/split")
    async def split(conn: Conn, req: ServerRequest) -> None:
        size, cut, first = (int(x) for x in req.query.split("_"))
        body = bodies[size]
        data = head(size) + body
        hl = len(head(size))
        # the head in pieces cut mid-line, then the body in two: the first piece ends
        # ``first`` bytes before the tail starts (negative: inside the tail)
        await conn.send(data[:cut])
        await conn.sleep(0.005)
        await conn.send(data[cut : hl - 3])
        await conn.sleep(0.005)
        at = max(hl, hl + size - TAIL - first)
        await conn.send(data[hl - 3 : at])
        await conn.sleep(0.01)
        await conn.send(data[at:])

    async def main() -> None:
        async with aioduct.Client() as client:
            for size, body in bodies.items():
                for cut in (1, 5, 17, 20):
                    for first in (0, 1, -1, TAIL - 1, -TAIL + 1, 40_000):
                        r = await client.get(f"{srv.url}/split?{size}_{cut}_{first}")
                        assert r.content == body, (size, cut, first)
            assert (await client.get(srv.url + "/good")).content == b"ok"
        assert srv.connections_accepted == 1

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_large_response_buffered_whole_before_the_head_is_read(
    srv: ScriptServer, loop: str
) -> None:
    """The client's loop is busy while the whole response arrives, so the head read
    finds it all buffered (and takes only a part of more than 256 KiB); then bytes
    beyond the body keep the connection out of the pool."""
    sizes = [(256 << 10) - 38, (256 << 10) - 37, (256 << 10) - 36, 300_000, 3 << 20]
    bodies = {size: payload(size, size) for size in sizes}

    @srv.route("/whole")
    async def whole(conn: Conn, req: ServerRequest) -> None:
        size, extra = (int(x) for x in req.query.split("-"))
        await conn.sleep(0.05)
        await conn.send(head(size) + bodies[size] + b"X" * extra)

    async def get(client: aioduct.Client, url: str) -> aioduct.Response:
        task = asyncio.ensure_future(client.get(url))
        await asyncio.sleep(0.02)  # the request is sent, the client waits for the head
        time.sleep(0.3)  # noqa: ASYNC251 (a busy loop: the response piles up in the kernel)
        return await task

    async def main() -> None:
        async with aioduct.Client() as client:
            for size, body in bodies.items():
                r = await get(client, f"{srv.url}/whole?{size}-0")
                assert r.content == body, size
                r = await client.get(f"{srv.url}/whole?{size}-0")
                assert r.content == body, size
            before = srv.connections_accepted
            for size, body in bodies.items():
                r = await get(client, f"{srv.url}/whole?{size}-5")
                assert r.content == body, size
                assert open_connections(client) == 0, "a connection with stray bytes was kept"
                assert (await client.get(srv.url + "/good")).content == b"ok"
            assert srv.connections_accepted > before

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_bodiless_responses_announcing_a_large_length(srv: ScriptServer, loop: str) -> None:
    srv.route_raw("/nc", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1048576\r\n\r\n")
    srv.route_raw("/nb", b"HTTP/1.1 204 No Content\r\nContent-Length: 1048576\r\n\r\n")
    srv.route_raw("/h", head(1 << 20))
    srv.route_raw("/zero", head(0))
    body = payload(1 << 20)

    @srv.route("/big")
    async def big(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(len(body)) + body[:5000])
        await conn.sleep(0.01)
        await conn.send(body[5000:])

    async def main() -> None:
        async with aioduct.Client() as client:
            for _ in range(2):
                assert (await client.head(srv.url + "/h")).content == b""
                assert (await client.get(srv.url + "/big")).content == body
                assert (await client.get(srv.url + "/nc")).content == b""
                assert (await client.get(srv.url + "/big")).content == body
                assert (await client.get(srv.url + "/zero")).content == b""
                assert (await client.get(srv.url + "/big")).content == body
        assert srv.connections_accepted <= 2

    run(loop, main)
