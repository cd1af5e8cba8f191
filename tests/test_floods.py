"""Servers that never stop talking: the request fails on a bound, not on a timer.

Issue 8's floods, each from a scripted server on loopback, through the send engine
(``Client``), ``BlockingClient`` and the local engine (``Client(engine="local")``, whose
worker runs HTTP/1.1 on its fast path and HTTP/2 on the pipeline):

* ``HTTP/1.1 100 Continue`` forever (CPython's CVE-2021-3737 class), and a head -- final or
  interim -- whose header lines never end (HTTP/1.1's counterpart of CONTINUATION);
* the same over HTTP/2: interim HEADERS forever on the request's stream;
* HEADERS without END_HEADERS, then CONTINUATION forever -- full 16 KiB frames (bytes)
  or empty ones (frames) (RUSTSEC-2024-0332 / CVE-2024-27316);
* PINGs, and empty DATA frames on the request's stream, forever.

Every client runs with ``read_timeout=None`` and no total timeout, so only the bound can
end the request; pytest's timeout is the only clock. On the send engine the flood runs
under tracemalloc: the whole process (client and server thread) stays within a few MiB
while the server would send without end.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import aioduct
from aioduct import uring
from aioduct.testing.h2server import H2Request, H2Server, raw_frame
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

HEADERS, PING, CONTINUATION, DATA = 0x1, 0x6, 0x9, 0x0
END_HEADERS = 0x4
STATUS_100 = b"\x08\x03100"  # :status 100, a literal that leaves no HPACK state
STATUS_200 = b"\x88"
#: Peak traced memory of the whole test process while a flood is refused.
MEMORY_BOUND = 8 * 1024 * 1024

pytestmark = pytest.mark.timeout(60)


# -- the flooding servers ------------------------------------------------------------------


async def endless_continue(conn: Conn, req: ServerRequest) -> None:
    while True:
        await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n" * 100)


def endless_head(status_line: bytes) -> Any:
    async def flood(conn: Conn, req: ServerRequest) -> None:
        await conn.send(status_line)
        while True:
            await conn.send(b"X-A: b\r\n" * 100)

    return flood


def forever(first: Callable[[int], bytes], then: Callable[[int], bytes]) -> Any:
    """An H2Server handler writing ``first`` once, then ``then`` until the client leaves."""

    async def flood(req: H2Request) -> None:
        sid = req.stream_id
        await req.conn.send_raw(first(sid))
        while True:
            await req.conn.send_raw(then(sid))

    return flood


H2_FLOODS = {
    "interim": forever(
        lambda sid: b"", lambda sid: raw_frame(HEADERS, END_HEADERS, sid, STATUS_100) * 50
    ),
    "continuation-bytes": forever(
        lambda sid: raw_frame(HEADERS, 0, sid, STATUS_200),
        lambda sid: raw_frame(CONTINUATION, 0, sid, b"\x00" * 16384),
    ),
    "continuation-frames": forever(
        lambda sid: raw_frame(HEADERS, 0, sid, STATUS_200),
        lambda sid: raw_frame(CONTINUATION, 0, sid) * 100,
    ),
    "ping": forever(lambda sid: b"", lambda sid: raw_frame(PING, 0, 0, b"12345678") * 100),
    "empty-data": forever(
        lambda sid: raw_frame(HEADERS, END_HEADERS, sid, STATUS_200),
        lambda sid: raw_frame(DATA, 0, sid) * 100,
    ),
}


@pytest.fixture(scope="module")
def h1_server() -> Iterator[ScriptServer]:
    with ScriptServer() as srv:
        srv.add_route("/continue", endless_continue)
        srv.add_route("/head", endless_head(b"HTTP/1.1 200 OK\r\n"))
        srv.add_route("/interim-head", endless_head(b"HTTP/1.1 100 Continue\r\n"))
        srv.route_respond("/ok", body=b"ok")
        yield srv


@pytest.fixture(scope="module")
def h2_server() -> Iterator[H2Server]:
    with H2Server() as srv:
        for name, handler in H2_FLOODS.items():
            srv.route("/" + name)(handler)
        yield srv


# -- the engines ---------------------------------------------------------------------------


@pytest.fixture(params=["send", "blocking", "local"])
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "local" and (reason := uring.unavailable_reason()) is not None:
        pytest.skip(reason)
    return str(request.param)


def fetch(engine: str, url: str, **options: Any) -> aioduct.Response:
    """GET ``url`` on ``engine`` with no read or total timeout."""
    options = {"read_timeout": None, "timeout": None, **options}
    if engine == "blocking":
        with aioduct.BlockingClient(**options) as client:
            return client.get(url)

    async def get() -> aioduct.Response:
        local = {"engine": "local", "workers": 1} if engine == "local" else {}
        async with aioduct.Client(**local, **options) as client:
            return await client.get(url)

    return asyncio.run(get())


def refused(engine: str, call: Callable[[], object], match: str) -> None:
    """``call()`` raises RemoteProtocolError saying ``match``; traced on the send engine."""
    if engine != "send":
        with pytest.raises(aioduct.RemoteProtocolError, match=match):
            call()
        return
    tracemalloc.start()
    try:
        with pytest.raises(aioduct.RemoteProtocolError, match=match):
            call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, f"peak traced memory {peak} bytes"


# -- the floods ----------------------------------------------------------------------------


def test_endless_100_continue_over_http11(engine: str, h1_server: ScriptServer) -> None:
    refused(
        engine,
        lambda: fetch(engine, h1_server.url + "/continue"),
        "more than 100 informational",
    )
    assert fetch(engine, h1_server.url + "/ok").content == b"ok"


@pytest.mark.parametrize("path", ["/head", "/interim-head"])
def test_endless_header_lines_over_http11(engine: str, h1_server: ScriptServer, path: str) -> None:
    refused(
        engine,
        lambda: fetch(engine, h1_server.url + path),
        "response head exceeds max_response_head_bytes=65536",
    )


@pytest.mark.parametrize(
    ("flood", "match"),
    [
        ("interim", "more than 100 informational .*ENHANCE_YOUR_CALM"),
        ("continuation-bytes", r"past 65536 bytes \(max_header_list_size\)"),
        ("continuation-frames", "more than 8 CONTINUATION frames"),
    ],
)
def test_header_floods_over_http2(engine: str, h2_server: H2Server, flood: str, match: str) -> None:
    refused(
        engine,
        lambda: fetch(engine, h2_server.url + "/" + flood, http2_prior_knowledge=True),
        match,
    )


@pytest.mark.parametrize("flood", ["ping", "empty-data"])
def test_frames_without_response_data_over_http2(h2_server: H2Server, flood: str) -> None:
    refused(
        "send",
        lambda: fetch("send", h2_server.url + "/" + flood, http2_prior_knowledge=True),
        "more than 10000 frames in a row",
    )


async def test_empty_data_frames_do_not_keep_a_read_timeout_from_firing(
    h2_server: H2Server,
) -> None:
    """Below the flood bound, an empty DATA frame now and then wakes no reader: a streamed
    body's read_timeout fires (each one used to start the read deadline again)."""

    @h2_server.route("/trickle")
    async def trickle(req: H2Request) -> None:
        await req.conn.send_raw(raw_frame(HEADERS, END_HEADERS, req.stream_id, STATUS_200))
        while True:
            await asyncio.sleep(0.02)
            await req.conn.send_raw(raw_frame(DATA, 0, req.stream_id))

    async with (
        aioduct.Client(http2_prior_knowledge=True, read_timeout=0.5) as client,
        client.stream("GET", h2_server.url + "/trickle") as response,
    ):
        with pytest.raises(aioduct.ReadTimeout):
            await response.aread()
