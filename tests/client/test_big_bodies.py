"""Large Content-Length bodies received into one buffer (aioduct.bodybuffers), on every
loop the send engine runs on, against hostile servers: truncated, reset, oversized,
lying about their length, slow, or sending more than they announced."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import aioduct
from aioduct import uring
from aioduct.bodybuffers import DIRECT_MAX, DIRECT_MIN
from aioduct.testing.nginx import TLSMaterial
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
LOOPS = ["asyncio", "uvloop", "uring"]


def run(loop: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``main()`` on a fresh loop of the kind named."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    elif loop == "uring":
        reason = uring.unavailable_reason()
        if reason is not None:
            pytest.skip(reason)
        from aioduct.uring.loop import new_event_loop

        factory = new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


def head(length: int) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


async def assert_recovers(client: aioduct.Client, srv: ScriptServer) -> None:
    pool = client._engine.pool  # type: ignore[union-attr]
    assert pool is not None
    assert pool.open_connections == 0, "a broken connection was kept"
    assert (await client.get(srv.url + "/good")).content == b"ok"


@pytest.fixture
def srv(script_server: ScriptServer) -> ScriptServer:
    script_server.route_raw("/good", OK)
    return script_server


@pytest.mark.parametrize("loop", LOOPS)
def test_bodies_around_the_thresholds_are_exact(srv: ScriptServer, loop: str) -> None:
    sizes = [DIRECT_MIN - 1, DIRECT_MIN, DIRECT_MIN + 1, 300_000, 1 << 20, (3 << 20) + 7]
    bodies = {size: payload(size, size) for size in sizes}

    @srv.route("/at-once")
    async def at_once(conn: Conn, req: ServerRequest) -> None:
        body = bodies[int(req.query)]
        await conn.send(head(len(body)) + body)

    @srv.route("/after-head")
    async def after_head(conn: Conn, req: ServerRequest) -> None:
        # The head and a little body first, the rest once the client is waiting.
        body = bodies[int(req.query)]
        await conn.send(head(len(body)) + body[:1000])
        await conn.sleep(0.02)
        for i in range(1000, len(body), 200_000):
            await conn.send(body[i : i + 200_000])

    async def main() -> None:
        async with aioduct.Client() as client:
            for _ in range(2):  # the second round on the kept-alive connection
                for path in ("/at-once", "/after-head"):
                    for size, body in bodies.items():
                        r = await client.get(f"{srv.url}{path}?{size}")
                        assert r.content == body and type(r.content) is bytes
        assert srv.connections_accepted == 1

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_reset_and_truncation_mid_body(srv: ScriptServer, loop: str) -> None:
    @srv.route("/reset")
    async def reset(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(1 << 20) + b"x" * 1000)
        await conn.sleep(0.02)
        await conn.send(b"y" * 200_000)
        await conn.sleep(0.02)
        conn.reset()

    @srv.route("/short")
    async def short(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(1 << 20) + b"x" * 1000)
        await conn.sleep(0.02)
        await conn.send(b"y" * 200_000)
        conn.close()

    async def main() -> None:
        async with aioduct.Client() as client:
            with pytest.raises((aioduct.ReadError, aioduct.RemoteProtocolError)):
                await client.get(srv.url + "/reset")
            await assert_recovers(client, srv)
            with pytest.raises(aioduct.RemoteProtocolError, match="201000 of 1048576"):
                await client.get(srv.url + "/short")
            await assert_recovers(client, srv)

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_lengths_beyond_the_limits(srv: ScriptServer, loop: str) -> None:
    @srv.route("/huge")
    async def huge(conn: Conn, req: ServerRequest) -> None:
        # Announces more than any buffer is reserved for, sends a little and closes:
        # the body is read as it arrives, so the claim costs no memory.
        await conn.send(head(DIRECT_MAX + 1) + b"z" * 100_000)
        conn.close()

    @srv.route("/big")
    async def big(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(1 << 20) + b"b" * 10_000)
        await conn.sleep(0.05)
        await conn.send(b"b" * ((1 << 20) - 10_000))

    async def main() -> None:
        async with aioduct.Client(max_body_size=500_000) as client:
            with pytest.raises(aioduct.BodyTooLarge, match="max_body_size=500000"):
                await client.get(srv.url + "/big")
            await assert_recovers(client, srv)
        async with aioduct.Client(max_body_size=1 << 20) as client:  # exactly at the limit
            assert len((await client.get(srv.url + "/big")).content) == 1 << 20
        async with aioduct.Client() as client:
            with pytest.raises(aioduct.RemoteProtocolError, match=f"100000 of {DIRECT_MAX + 1}"):
                await client.get(srv.url + "/huge")
            await assert_recovers(client, srv)

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_bytes_after_the_body_are_not_taken_for_it(srv: ScriptServer, loop: str) -> None:
    body = payload(200_000)

    @srv.route("/extra")
    async def extra(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(len(body)) + body[:100])
        await conn.sleep(0.02)
        await conn.send(body[100:] + b"HTTP/1.1 200 OK\r\n\r\nsmuggled")

    async def main() -> None:
        async with aioduct.Client() as client:
            r = await client.get(srv.url + "/extra")
            assert r.content == body
            await assert_recovers(client, srv)  # the connection was not kept

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_read_timeout_is_silence_not_the_whole_body(srv: ScriptServer, loop: str) -> None:
    body = payload(400_000)

    @srv.route("/steady")
    async def steady(conn: Conn, req: ServerRequest) -> None:
        # Ten pieces 0.1 s apart: 1 s in all, never 0.5 s of silence.
        await conn.send(head(len(body)))
        for i in range(0, len(body), 40_000):
            await conn.sleep(0.1)
            await conn.send(body[i : i + 40_000])

    @srv.route("/stall")
    async def stall(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(len(body)) + body[:100_000])
        await conn.sleep(30)

    async def main() -> None:
        async with aioduct.Client(read_timeout=0.5) as client:
            assert (await client.get(srv.url + "/steady")).content == body
            with pytest.raises(aioduct.ReadTimeout, match="reading the body"):
                await client.get(srv.url + "/stall")
            await assert_recovers(client, srv)

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_concurrent_big_bodies_finishing_out_of_order(srv: ScriptServer, loop: str) -> None:
    bodies = [payload(300_000 + i * 1000, i) for i in range(8)]

    @srv.route("/body")
    async def body(conn: Conn, req: ServerRequest) -> None:
        i = int(req.query)
        await conn.send(head(len(bodies[i])) + bodies[i][:5000])
        await conn.sleep(0.02 * (8 - i))  # the last asked for finishes first
        await conn.send(bodies[i][5000:])

    async def main() -> None:
        async with aioduct.Client() as client:
            got = await asyncio.gather(*(client.get(f"{srv.url}/body?{i}") for i in range(8)))
        assert [r.content for r in got] == bodies

    run(loop, main)


def test_tls_bodies_are_read_as_they_arrive(
    tls_script_server: ScriptServer, tls_ca: TLSMaterial
) -> None:
    """TLS streams offer no read_into: the body takes the ordinary path, intact."""
    body = payload(1 << 20)

    @tls_script_server.route("/tls")
    async def tls(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(len(body)) + body[:1000])
        await conn.sleep(0.02)
        await conn.send(body[1000:])

    async def main() -> None:
        async with aioduct.Client(verify=str(tls_ca.ca_pem_path)) as client:
            assert (await client.get(tls_script_server.url + "/tls")).content == body

    run("uring" if uring.unavailable_reason() is None else "asyncio", main)


def test_blocking_client_big_bodies(srv: ScriptServer) -> None:
    body = payload(1 << 20)

    @srv.route("/big")
    async def big(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(len(body)) + body[:1000])
        await conn.sleep(0.02)
        await conn.send(body[1000:])

    with aioduct.BlockingClient() as client:
        assert client.get(srv.url + "/big").content == body
