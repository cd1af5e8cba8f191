"""Shortcuts of the hot path keep their promises, on stock asyncio and on uvloop.

Each test pins down behaviour a performance change relies on: the loop's transport sets
TCP_NODELAY, receive buffers recycled between connections never leak bytes from one
response into another, and so on.
"""

from __future__ import annotations

import socket

import pytest

import aioduct
from aioduct.runtimes import asyncio as asyncio_runtime
from aioduct.runtimes.asyncio import AsyncioRuntime
from aioduct.testing.nginx import Nginx, deterministic_bytes
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

LOOPS = pytest.mark.parametrize(
    "loop_name", ["asyncio", pytest.param("uvloop", marks=pytest.mark.uvloop)]
)


def port_of(nginx: Nginx) -> int:
    return int(nginx.http_url.rsplit(":", 1)[1])


@pytest.mark.nginx
@LOOPS
async def test_open_tcp_leaves_nodelay_to_the_loop(nginx: Nginx, loop_name: str) -> None:
    runtime = AsyncioRuntime()
    assert runtime.name == loop_name
    stream = await runtime.open_tcp("127.0.0.1", port_of(nginx), deadline=None)
    try:
        sock = stream._transport.get_extra_info("socket")  # type: ignore[union-attr]
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    finally:
        stream.close()


@pytest.mark.nginx
@LOOPS
async def test_recycled_receive_buffers_never_mix_responses(nginx: Nginx, loop_name: str) -> None:
    big = deterministic_bytes(65536)
    async with aioduct.Client(pool_max_idle_per_host=0) as client:
        for i in range(12):
            path, expected = ("/bytes/64k", big) if i % 2 else ("/small", b"Hello, World!")
            r = await client.get(nginx.http_url + path)
            assert r.content == expected
    assert 0 < len(asyncio_runtime._spare_buffers) <= asyncio_runtime._MAX_SPARE_BUFFERS


@pytest.mark.nginx
@LOOPS
async def test_a_closed_stream_gives_its_buffer_away_and_reads_nothing(
    nginx: Nginx, loop_name: str
) -> None:
    runtime = AsyncioRuntime()
    stream = await runtime.open_tcp("127.0.0.1", port_of(nginx), deadline=None)
    stream.write(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await stream.read(None)).startswith(b"HTTP/1.1 200 OK\r\n")
    buffer = stream._buf
    stream.close()
    stream.close()  # closing twice recycles nothing more
    assert sum(spare is buffer for spare in asyncio_runtime._spare_buffers) == 1
    assert not any(len(spare) == 0 for spare in asyncio_runtime._spare_buffers)
    assert stream._buf is not buffer
    assert await stream.read(None) == b""
    again = await runtime.open_tcp("127.0.0.1", port_of(nginx), deadline=None)
    try:
        assert again._buf is buffer  # the most recently returned buffer is reused first
    finally:
        again.close()


@pytest.mark.nginx
@LOOPS
async def test_timings_are_built_once_when_read(nginx: Nginx, loop_name: str) -> None:
    async with aioduct.Client() as client:
        first = await client.get(nginx.http_url + "/small")
        second = await client.get(nginx.http_url + "/small")
    t1, t2 = first.timings, second.timings
    assert isinstance(t1, aioduct.Timings) and second.timings is t2
    assert t1.connect is not None and t1.pool_wait is None
    assert t2.connect is None and t2.pool_wait is not None and t2.pool_wait >= 0
    assert t2.ttfb is not None and 0 < t2.ttfb <= t2.total
    second.timings = t1
    assert second.timings is t1


@pytest.mark.nginx
@LOOPS
async def test_max_body_size_applies_to_a_body_read_in_one_piece(
    nginx: Nginx, loop_name: str
) -> None:
    async with aioduct.Client(max_body_size=12) as client:
        with pytest.raises(aioduct.BodyTooLarge, match="max_body_size=12"):
            await client.get(nginx.http_url + "/small")  # 13 bytes, in the head's read
        assert client._engine.pool is not None
        assert client._engine.pool.open_connections == 0  # that connection was dropped
    async with aioduct.Client(max_body_size=13) as client:
        assert (await client.get(nginx.http_url + "/small")).content == b"Hello, World!"


@LOOPS
async def test_a_body_of_exact_size_arriving_in_many_fragments(
    script_server: ScriptServer, loop_name: str
) -> None:
    body = deterministic_bytes(3000)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n"

    @script_server.route("/fragments")
    async def fragments(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head[:10])
        await conn.drip(head[10:] + body[:5], chunk_size=7, delay=0.001)
        await conn.drip(body[5:], chunk_size=700, delay=0.001)

    async with aioduct.Client() as client:
        for _ in range(2):  # the second time on the same, reused connection
            r = await client.get(script_server.url + "/fragments")
            assert r.content == body
        assert client._engine.pool is not None and client._engine.pool.open_connections == 1
