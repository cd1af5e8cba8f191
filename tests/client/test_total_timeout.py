"""The total timeout holds against a server that never stops sending.

A read returns at once when bytes are buffered, and a timer armed for a deadline that
has passed fires only on the loop's next turn, after the I/O that is ready: with a busy
loop there are always new bytes first, so without a check on every read a steady sender
outlasted ``Timeout(total=...)`` (found by the big-body review; read_into had the same
gap). The server sends for 4x the total timeout and then ends the body (chunked) or
closes the connection (Content-Length): before the fix, uvloop -- whose timers run after
the ready I/O -- often read on to that end and the request succeeded or failed with the
truncation instead of TotalTimeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

import aioduct
from aioduct.testing.server import Conn, PeerClosed, ScriptServer, ServerRequest

from .test_big_bodies import LOOPS, head, payload, run

CHUNK = b"x" * 4096
SECONDS = 2.0  # how long the server keeps sending: 4x the total timeout


def serve_forever(srv: ScriptServer) -> None:
    """Bodies sent steadily for SECONDS on the ordinary read path (not read_into):
    chunked, and a Content-Length above DIRECT_MAX."""

    @srv.route("/steady")
    async def steady(conn: Conn, req: ServerRequest) -> None:
        if req.query == "chunked":
            await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            frame = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK)
        else:
            # (above DIRECT_MAX: read as it arrives; never complete, the server closes)
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (1 << 30))
            frame = CHUNK
        end = time.monotonic() + SECONDS
        try:
            while time.monotonic() < end:
                await conn.send(frame)
                await conn.sleep(0.0005)
            if req.query == "chunked":
                await conn.send(b"0\r\n\r\n")
            else:
                conn.close()
        except (PeerClosed, OSError):
            pass


async def hog(stop: asyncio.Event) -> None:
    while not stop.is_set():  # every loop turn takes a while: bytes are always there
        time.sleep(0.004)  # noqa: ASYNC251
        await asyncio.sleep(0)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("framing", ["chunked", "length"])
@pytest.mark.parametrize("streamed", [False, True], ids=["buffered", "streamed"])
@pytest.mark.parametrize("loop", LOOPS)
def test_total_timeout_holds_against_a_steady_sender(
    script_server: ScriptServer, loop: str, streamed: bool, framing: str
) -> None:
    serve_forever(script_server)

    async def main() -> None:
        stop = asyncio.Event()
        busy = asyncio.ensure_future(hog(stop))
        try:
            timeout = aioduct.Timeout(total=0.5, read=None)
            async with aioduct.Client(timeout=timeout) as client:
                url = f"{script_server.url}/steady?{framing}"
                with pytest.raises(aioduct.TotalTimeout, match=r"timeout=0\.5s"):
                    if streamed:
                        async with client.stream("GET", url) as response:
                            async for _ in response.aiter_bytes():
                                pass
                    else:
                        await client.get(url)
        finally:
            stop.set()
            await busy

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_total_timeout_holds_while_a_big_body_keeps_arriving(
    script_server: ScriptServer, loop: str
) -> None:
    """A body that arrives steadily for longer than the request's total timeout fails
    at that timeout: progress restarts the wait for silence (read_timeout), never the
    total. (With a busy loop there were always new bytes when the timer fired, so the
    body was read to its end, however long it took.)"""
    body = payload(3 << 20)

    @script_server.route("/steady-body")
    async def steady(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(len(body)))
        try:
            for i in range(0, len(body), 4096):
                await conn.send(body[i : i + 4096])
                await conn.sleep(0.0005)
        except (PeerClosed, OSError):
            pass

    async def main() -> None:
        stop = asyncio.Event()
        busy = asyncio.ensure_future(hog(stop))
        try:
            async with aioduct.Client(timeout=aioduct.Timeout(total=0.5, read=None)) as client:
                with pytest.raises(aioduct.TotalTimeout):
                    await client.get(script_server.url + "/steady-body")
        finally:
            stop.set()
            await busy

    run(loop, main)


@pytest.mark.timeout(10)
def test_blocking_client_total_timeout_holds_against_a_steady_sender(
    script_server: ScriptServer,
) -> None:
    serve_forever(script_server)
    timeout = aioduct.Timeout(total=0.5, read=None)
    with (
        aioduct.BlockingClient(timeout=timeout) as client,
        pytest.raises(aioduct.TotalTimeout, match=r"timeout=0\.5s"),
    ):
        client.get(script_server.url + "/steady?length")


@pytest.mark.timeout(10)
@pytest.mark.parametrize("loop", LOOPS)
def test_http2_total_timeout_holds_against_a_steady_sender(loop: str) -> None:
    """HTTP/2 waits for the connection's reader task, not on the socket; the contract
    holds there too. (This one passed before the fix as well: the server's sends are
    paced by flow control, so the reader's waits give the timer its turn.)"""
    from aioduct.testing.h2server import H2Request, H2Server

    with H2Server() as srv:

        @srv.route("/steady")
        async def steady(req: H2Request) -> None:
            req.send_headers(200)
            end = time.monotonic() + SECONDS
            with contextlib.suppress(Exception):  # the client resets the stream
                while time.monotonic() < end:
                    await req.send_data(CHUNK)
                    await asyncio.sleep(0.0005)
                await req.send_data(b"", end_stream=True)

        async def main() -> None:
            stop = asyncio.Event()
            busy = asyncio.ensure_future(hog(stop))
            try:
                timeout = aioduct.Timeout(total=0.5, read=None)
                async with aioduct.Client(timeout=timeout, http2_prior_knowledge=True) as client:
                    with pytest.raises(aioduct.TotalTimeout, match=r"timeout=0\.5s"):
                        await client.get(srv.url + "/steady")
            finally:
                stop.set()
                await busy

        run(loop, main)
