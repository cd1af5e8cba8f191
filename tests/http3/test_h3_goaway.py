"""HTTP/3 GOAWAY (RFC 9114 §5.2) from aioquic's server on loopback: the connection takes
no new requests, requests on the named stream and later ones are retried on a new
connection (not processed), earlier ones finish; a malformed GOAWAY ends the
connection with H3_ID_ERROR / H3_FRAME_ERROR."""

from __future__ import annotations

import asyncio

import pytest

import aioduct
from aioduct.testing.h3server import H3Request, H3Server
from aioduct.testing.nginx import TLSMaterial

from .conftest import options


def open_connections(client: aioduct.Client) -> int:
    pool = client._engine.pool  # type: ignore[union-attr]
    assert pool is not None
    return int(pool.open_connections)


async def test_goaway_mid_flight_retries_only_unprocessed_streams(
    h3: H3Server, tls_ca: TLSMaterial
) -> None:
    loop = asyncio.get_running_loop()
    first_arrived = asyncio.Event()  # set from the server's thread
    # Used on the server's loop only:
    laters: list[int] = []
    laters_arrived = asyncio.Event()
    goaway_sent = asyncio.Event()

    @h3.route("/first")
    async def first(req: H3Request) -> None:
        loop.call_soon_threadsafe(first_arrived.set)
        await laters_arrived.wait()
        # Stream 4 (the first /later) was processed; 8 and above were not.
        req.conn.goaway(8)
        goaway_sent.set()
        req.respond(200, b"first")

    @h3.route("/later")
    async def later(req: H3Request) -> None:
        await req.body()
        if req.conn is not h3.conns[0]:
            req.respond(200, b"later on 2")
            return
        laters.append(req.stream_id)
        if len(laters) == 4:
            laters_arrived.set()
        await goaway_sent.wait()
        if req.stream_id < 8:
            req.respond(200, b"later on 1")
        else:
            await asyncio.sleep(30)  # not processed: never answered here

    async with aioduct.Client(**options(tls_ca)) as client:
        one = asyncio.ensure_future(client.get(h3.url + "/first"))
        await first_arrived.wait()
        rest = [
            asyncio.ensure_future(client.post(h3.url + "/later", content=b"x")) for _ in range(4)
        ]
        results = await asyncio.gather(one, *rest)
        assert sorted(r.content for r in results) == [
            b"first",
            b"later on 1",
            b"later on 2",
            b"later on 2",
            b"later on 2",
        ]
        assert open_connections(client) == 1  # the first left once drained
        again = await client.get(h3.url + "/small")
    assert again.content == b"Hello, World!"
    assert h3.connections_accepted == 2
    assert [r[0] for r in h3.requests if r[3] == "/small"] == [2]


async def test_goaway_on_an_idle_connection_retires_it(h3: H3Server, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(**options(tls_ca)) as client:
        r = await client.get(h3.url + "/goaway")
        assert r.content == b"goaway"
        after = await client.get(h3.url + "/small")
        assert open_connections(client) == 1
    assert after.content == b"Hello, World!" and h3.connections_accepted == 2


async def test_streaming_body_is_not_replayed_after_goaway(
    h3: H3Server, tls_ca: TLSMaterial
) -> None:
    @h3.route("/never")
    async def never(req: H3Request) -> None:
        req.conn.goaway(0)
        await asyncio.sleep(30)

    async def body():  # type: ignore[no-untyped-def]
        yield b"once"

    async with aioduct.Client(**options(tls_ca)) as client:
        with pytest.raises(aioduct.ReadError, match=r"GOAWAY.*before processing this request"):
            await client.post(h3.url + "/never", content=body())
        assert (await client.get(h3.url + "/small")).status == 200
    assert h3.connections_accepted == 2


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\x07\x01\x03", "H3_ID_ERROR"),  # stream 3 is not a request stream
        (b"\x07\x02\x08\x00", "H3_FRAME_ERROR"),  # a byte after the stream id
        (b"\x07\x01\x40", "H3_FRAME_ERROR"),  # a 2-byte varint cut to 1 byte
        (b"\x07\x09" + b"\x00" * 9, "H3_FRAME_ERROR"),  # longer than any stream id
        (b"\x07\x01\x04\x07\x01\x08", "H3_ID_ERROR"),  # a second GOAWAY raising the id
    ],
)
async def test_malformed_goaway_closes_the_connection(
    h3: H3Server, tls_ca: TLSMaterial, raw: bytes, code: str
) -> None:
    @h3.route("/bad")
    async def bad(req: H3Request) -> None:
        req.conn.send_control(raw)
        await asyncio.sleep(30)

    async with aioduct.Client(**options(tls_ca)) as client:
        with pytest.raises(aioduct.TransportError, match=code):
            await client.get(h3.url + "/bad")
        assert (await client.get(h3.url + "/small")).status == 200
    assert h3.connections_accepted == 2


def test_blocking_client_retries_after_goaway(h3: H3Server, tls_ca: TLSMaterial) -> None:
    @h3.route("/refused-once")
    async def refused_once(req: H3Request) -> None:
        if req.conn is h3.conns[0]:
            req.conn.goaway(req.stream_id)  # this very request: not processed
            await asyncio.sleep(30)
        else:
            req.respond(200, b"second connection")

    with aioduct.BlockingClient(**options(tls_ca)) as client:
        r = client.get(h3.url + "/refused-once")
        again = client.get(h3.url + "/small")
    assert r.content == b"second connection" and again.status == 200
    assert h3.connections_accepted == 2


def test_local_engine_workers_follow_goaway(h3: H3Server, tls_ca: TLSMaterial) -> None:
    with aioduct.LocalEngine(workers=1, **options(tls_ca)) as engine:  # type: ignore[arg-type]
        results = list(engine.map([h3.url + "/goaway", h3.url + "/small", h3.url + "/goaway"]))
    assert [(r.status, r.body, r.error) for r in results] == [
        (200, b"goaway", None),
        (200, b"Hello, World!", None),
        (200, b"goaway", None),
    ]
    assert h3.connections_accepted >= 2


async def test_request_retried_after_goaway_is_byte_identical(
    h3: H3Server, tls_ca: TLSMaterial
) -> None:
    body = bytes(range(256)) * 1000

    @h3.route("/replay")
    async def replay(req: H3Request) -> None:
        received = await req.body()
        if req.conn is h3.conns[0]:
            req.conn.goaway(req.stream_id)  # this request was not processed
            await asyncio.sleep(30)
            return
        seen = f"{req.method} {req.path} {req.header('x-tag')} {len(received)}\n".encode()
        req.respond(200, seen + received)

    async with aioduct.Client(**options(tls_ca)) as client:
        r = await client.post(h3.url + "/replay?q=1", content=body, headers={"X-Tag": "t-1"})
    assert r.content == b"POST /replay?q=1 t-1 256000\n" + body
    assert [req[2:] for req in h3.requests] == [("POST", "/replay?q=1")] * 2


async def test_control_stream_floods_stay_bounded(h3: H3Server, tls_ca: TLSMaterial) -> None:
    """A 1 MB frame of an unknown type and 20 000 repeated GOAWAYs on the control stream:
    skipped without buffering, the GOAWAYs applied once each, the request below the id
    answered."""

    @h3.route("/flood")
    async def flood(req: H3Request) -> None:
        unknown = b"\x21" + b"\x80\x10\x00\x00" + b"\x00" * 0x100000  # reserved type 0x21
        goaways = b"\x07\x01\x3c" * 20_000  # GOAWAY(60), repeated
        req.conn.send_control(unknown + goaways)
        req.respond(200, b"after the flood")

    async with aioduct.Client(**options(tls_ca)) as client:
        r = await client.get(h3.url + "/flood")
        (conn,) = client._engine.pool.shared_connections()  # type: ignore[union-attr]
        for _ in range(500):  # the control stream's megabyte may still be arriving
            if conn.error is not None:
                break
            await asyncio.sleep(0.01)
        assert conn.goaway_id == 60 and conn.error is not None  # retired once idle
        again = await client.get(h3.url + "/small")
    assert r.content == b"after the flood" and again.status == 200
    assert h3.connections_accepted == 2
